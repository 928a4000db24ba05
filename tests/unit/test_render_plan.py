"""Step 4's plan for the deployment files: Kubernetes manifests only when the spec chooses them.

Pure (``plan_files`` reads only the template tree and the spec): specs come from
:func:`wsforge.architecture.design` on the shipped examples, with memory conventions where a
combination needs one, so these stay fast.
"""

from __future__ import annotations

from pathlib import Path

from wsforge.architecture import design
from wsforge.memory import Conventions, MemoryEntry
from wsforge.render import plan_files
from wsforge.requirements import load_requirements
from wsforge.spec import ArchitectureSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = {
    "deploy/kubernetes/README.md",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/deployment.yaml",
    "deploy/kubernetes/kustomization.yaml",
    "deploy/kubernetes/pdb.yaml",
    "deploy/kubernetes/secret.example.yaml",
    "deploy/kubernetes/service.yaml",
}
API = {"deploy/kubernetes/service-api.yaml", "deploy/kubernetes/networkpolicy.yaml"}


def _spec(example: str, **conventions: object) -> ArchitectureSpec:
    req = load_requirements(EXAMPLES / example)
    memory = MemoryEntry(project=req.project_name, conventions=Conventions.model_validate(conventions))
    return design(req, memory if conventions else None)


def _kubernetes_files(spec: ArchitectureSpec) -> set[str]:
    return {p.path for p in plan_files(spec) if p.path.startswith("deploy/kubernetes/")}


def _has_kubernetes_test(spec: ArchitectureSpec) -> bool:
    return "tests/test_kubernetes.py" in {p.path for p in plan_files(spec)}


def test_scaled_out_example_gets_manifests_autoscaler_and_a_dev_redis() -> None:
    """notifications: 5 instances on Redis Streams, so step 2 turns Kubernetes on."""
    spec = _spec("notifications.yaml")
    assert spec.deploy.kubernetes
    assert _kubernetes_files(spec) == BASE | API | {
        "deploy/kubernetes/hpa.yaml",
        "deploy/kubernetes/dev/kustomization.yaml",
        "deploy/kubernetes/dev/redis.yaml",
    }
    assert _has_kubernetes_test(spec)


def test_nats_project_gets_a_dev_nats_instead() -> None:
    spec = _spec("notifications.yaml", preferred_broker="nats")
    files = _kubernetes_files(spec)
    assert {"deploy/kubernetes/dev/nats.yaml", "deploy/kubernetes/hpa.yaml"} <= files
    assert "deploy/kubernetes/dev/redis.yaml" not in files


def test_rabbitmq_project_gets_its_adapter_breaker_tests_and_a_dev_rabbitmq() -> None:
    """preferred_broker rabbitmq: the RabbitMQ adapter behind the circuit breaker, the broker
    suites that need a real node, and a development RabbitMQ for the Kubernetes manifests; no
    other broker's adapter or dev server."""
    spec = _spec("notifications.yaml", preferred_broker="rabbitmq")
    planned = {p.path for p in plan_files(spec)}
    package = spec.package
    assert {
        f"src/{package}/broker/rabbitmq.py",
        f"src/{package}/broker/breaker.py",
        "tests/test_broker_health.py",
        "tests/test_multi_instance.py",
        "deploy/kubernetes/dev/rabbitmq.yaml",
        "deploy/kubernetes/hpa.yaml",
    } <= planned
    others = {
        f"src/{package}/broker/redis.py",
        f"src/{package}/broker/nats.py",
        "tests/test_subscribe_storm.py",
        "deploy/kubernetes/dev/redis.yaml",
        "deploy/kubernetes/dev/nats.yaml",
    }
    assert not others & planned


def test_a_redis_project_renders_no_rabbitmq_adapter() -> None:
    spec = _spec("notifications.yaml")
    planned = {p.path for p in plan_files(spec)}
    assert f"src/{spec.package}/broker/rabbitmq.py" not in planned
    assert "deploy/kubernetes/dev/rabbitmq.yaml" not in planned


def test_single_instance_example_renders_no_manifests() -> None:
    """chat: one instance on the in-memory broker; compose runs it, no Kubernetes files or test."""
    spec = _spec("chat.yaml")
    assert not spec.deploy.kubernetes
    assert _kubernetes_files(spec) == set()
    assert not _has_kubernetes_test(spec)
    assert "deploy/docker-compose.yml" in {p.path for p in plan_files(spec)}


def test_kubernetes_on_the_in_memory_broker_has_no_autoscaler_and_no_dev_broker() -> None:
    """Memory asks for Kubernetes on a single-instance project: one pod, nothing to autoscale."""
    spec = _spec("chat.yaml", kubernetes=True)
    assert spec.deploy.kubernetes
    files = _kubernetes_files(spec)
    assert files >= BASE
    assert not {f for f in files if f.endswith("hpa.yaml") or "/dev/" in f}
    assert _has_kubernetes_test(spec)


def test_memory_can_turn_kubernetes_off() -> None:
    spec = _spec("notifications.yaml", kubernetes=False)
    assert _kubernetes_files(spec) == set()
    assert not _has_kubernetes_test(spec)


# --- mounted in the team's app (issue 26) --------------------------------------------------------

ASGI_FILES = {"src/chat_demo/asgi.py", "src/chat_demo/transport/asgi.py", "host_app/__init__.py"}
FASTAPI_ONLY = {"host_app/app.py", "tests/test_asgi.py"}
DJANGO_ONLY = {
    "src/chat_demo/django_support.py",
    "host_app/django_site/settings.py",
    "host_app/django_site/asgi.py",
    "host_app/django_site/urls.py",
    "tests/test_django.py",
}


def _paths(spec: ArchitectureSpec) -> set[str]:
    return {p.path for p in plan_files(spec)}


def test_a_standalone_project_gets_no_host_app_files() -> None:
    paths = _paths(_spec("chat.yaml"))
    assert not paths & (ASGI_FILES | FASTAPI_ONLY | DJANGO_ONLY)
    assert not any(p.startswith("host_app/") for p in paths)


def test_mounted_in_fastapi_gets_the_asgi_target_and_its_example_host() -> None:
    paths = _paths(_spec("chat.yaml", existing_app="fastapi"))
    assert paths >= ASGI_FILES | FASTAPI_ONLY
    assert not paths & DJANGO_ONLY


def test_mounted_in_django_gets_the_site_and_no_fastapi_host() -> None:
    paths = _paths(_spec("chat.yaml", existing_app="django"))
    assert paths >= ASGI_FILES | DJANGO_ONLY
    assert not paths & FASTAPI_ONLY


def test_beside_the_app_renders_no_host_files() -> None:
    paths = _paths(_spec("chat.yaml", existing_app="fastapi", mount_in_app=False))
    assert not any(p.startswith("host_app/") for p in paths) and not paths & ASGI_FILES
