"""Django's command-line utility for the example site: ``python -m host_app.django_site.manage migrate``."""

import os
import sys
from pathlib import Path


def main() -> None:
    # Run as a script too (python host_app/django_site/manage.py ...): the project root holds the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host_app.django_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
