"""Certificates for the real node, issued by the control plane's throwaway CA.

The kubelet authenticates as `system:node:<name>` in `system:nodes`, so the apiserver's Node
authorizer and NodeRestriction treat it as any kubelet; its serving certificate names the
node IP that metrics-server scrapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from celeriac_dev.certs import PKI, _issue, _key, _name, _write_cert, _write_key


@dataclass(frozen=True)
class NodeCerts:
    dir: Path

    @property
    def client_cert(self) -> Path:
        return self.dir / "kubelet-client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "kubelet-client.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "kubelet.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "kubelet.key"


def _load_ca(pki: PKI) -> tuple[x509.Name, rsa.RSAPrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{pki.ca_key} is not an RSA key")
    return cert.subject, key


def issue_node_certs(pki: PKI, directory: Path, node_name: str, node_ip: str) -> NodeCerts:
    directory.mkdir(parents=True, exist_ok=True)
    certs = NodeCerts(directory)
    ca_name, ca_key = _load_ca(pki)
    client_key = _key()
    _write_key(client_key, certs.client_key)
    subject = _name(f"system:node:{node_name}", "system:nodes")
    _write_cert(_issue(subject, client_key, ca_name, ca_key, client=True), certs.client_cert)
    serving_key = _key()
    _write_key(serving_key, certs.serving_key)
    names = (node_ip, node_name, "127.0.0.1")
    _write_cert(
        _issue(_name(node_name), serving_key, ca_name, ca_key, server_names=names),
        certs.serving_cert,
    )
    return certs
