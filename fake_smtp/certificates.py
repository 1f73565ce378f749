"""A throwaway certificate authority for the fake SMTP peer's STARTTLS and implicit TLS.

trustme makes a CA and a server certificate for 127.0.0.1 and localhost in memory. They are written to files
because what a client is told to trust is a file (aiosmtplib's ``cert_bundle``, the bot's config), not an object.
trustme is imported inside ``make_tls_files`` so the plain demo relay runs without the dev extra installed.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """A CA and the server certificate it signed, as PEM files."""

    ca_file: Path  # what a client trusts: aiosmtplib(cert_bundle=str(ca_file)) or tls_context=client_context()
    cert_file: Path  # the server's certificate chain
    key_file: Path  # the server's private key

    def server_context(self) -> ssl.SSLContext:
        # Purpose.CLIENT_AUTH gives a server-side context that does not ask for client certificates, which is
        # what aiosmtpd expects (it warns about verify_mode CERT_REQUIRED and check_hostname).
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA (hostname checks stay on)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls_files(
    directory: Path | str | None = None, identities: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsFiles:
    """Make a fresh CA and a server certificate for ``identities``, written into ``directory``.

    Without a directory a new temporary one is made; removing it is the caller's business.
    """
    try:
        import trustme  # lazily: only TLS modes need it, and it is a dev dependency
    except ImportError as missing:
        raise ImportError("the fake SMTP peer's TLS modes need trustme: pip install -e '.[dev]'") from missing

    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="fake-smtp-tls-"))
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*identities)
    files = TlsFiles(ca_file=folder / "ca.pem", cert_file=folder / "server-chain.pem", key_file=folder / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.key_file))
    return files
