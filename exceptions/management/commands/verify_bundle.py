"""``manage.py verify_bundle DIR``: the policy repository's checkout against the portal's tree signature.

The checking is ``tools/egress-verify/egress_verify.py``, loaded from its file,
so the portal and the policy repository's CI run one verifier; this command
only supplies the portal's own public key when none is given.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from foundation.signing import public_key_pem

TOOL = Path(settings.BASE_DIR) / "tools" / "egress-verify" / "egress_verify.py"
MODULE = "egress_portal_tools.egress_verify"


def verifier() -> ModuleType:
    """The tool as a module (registered under its own name, as its dataclasses need)."""
    loaded = sys.modules.get(MODULE)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(MODULE, TOOL)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot load the verifier from {TOOL}", returncode=2)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


class Command(BaseCommand):
    help = (
        "Verify a checkout of the policy repository against the portal's signature (MANIFEST.sig): "
        "every edited, added or removed file is named. Exit codes: 0 verified; 1 a file edited, added or "
        "removed, or an audit checkpoint that does not verify; 2 usage; 3 the signature is missing or bad."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="the checkout: the directory that holds MANIFEST.json")
        parser.add_argument(
            "--public-key",
            type=Path,
            action="append",
            default=[],
            help="PEM public key (default: the portal's EGRESS_SIGNING_KEY); repeat it during a key rotation",
        )
        parser.add_argument(
            "--checkpoint-public-key",
            type=Path,
            action="append",
            default=[],
            help="the key audit checkpoints are signed with, if not the bundle key",
        )
        parser.add_argument(
            "--allow", action="append", default=[], metavar="GLOB", help="unsigned paths to accept (outside the bundle)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tool = verifier()
        try:
            if options["public_key"]:
                keys = tool.read_keys([str(p) for p in options["public_key"]], "--public-key")
            else:
                try:
                    pem = public_key_pem()
                except ImproperlyConfigured as exc:
                    raise CommandError(
                        f"{exc} Give the portal's public key with --public-key FILE.", returncode=2
                    ) from exc
                keys = [tool.load_public_key(pem.encode("ascii"), name="EGRESS_SIGNING_KEY")]
            checkpoint_keys = (
                tool.read_keys([str(p) for p in options["checkpoint_public_key"]], "--checkpoint-public-key") or None
            )
            report = tool.verify(
                options["directory"], keys, checkpoint_keys=checkpoint_keys, allow=tuple(options["allow"])
            )
        except tool.Failure as exc:
            raise CommandError(str(exc), returncode=exc.code) from exc
        out = io.StringIO()
        code = tool.print_report(report, options["directory"], out)
        if code:
            raise CommandError(out.getvalue().rstrip("\n"), returncode=code)
        self.stdout.write(self.style.SUCCESS(out.getvalue().rstrip("\n")))
