"""A local SMTP peer: the tests receive and parse the bot's incident mail with it, and the local workspace
(``rollback-bot demo``) uses it as a mail catcher.

``MailCatcher`` serves plain, STARTTLS or implicit TLS, with or without AUTH, and can refuse, go down or answer
slowly on request; ``make_tls_files`` makes the throwaway CA its TLS modes use (it needs trustme, a dev
dependency, only when called).
"""

from .certificates import TlsFiles, make_tls_files
from .received import Received, parse_message
from .server import MailCatcher

__all__ = ["MailCatcher", "Received", "TlsFiles", "make_tls_files", "parse_message"]
