from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import ExpertLevel, Role
from annotations.services.users import user_create


class Command(BaseCommand):
    help = "Create an account in one role. The random password is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--expert-level", default=ExpertLevel.SPECIALIST, choices=ExpertLevel.values
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            user, password = user_create(
                username=opts["username"],
                role=opts["role"],
                email=opts["email"],
                expert_level=opts["expert_level"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{user.username} ({opts['role']}) password: {password}")
