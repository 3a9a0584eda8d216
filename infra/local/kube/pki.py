"""The local control plane's certificates and kubeconfigs: a CA, the API server's serving certificate (for 127.0.0.1
and the service IP), one client certificate per component and user, written under the cluster's ``pki`` folder."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

SERVICE_CIDR = "10.96.0.0/16"


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject_cn: str, key, issuer=None, issuer_key=None, orgs=(), sans=(), ips=(), ca=False, server=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        + [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]
    )
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans or ips:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(s) for s in sans] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
    return b.sign(issuer_key or key, hashes.SHA256())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


# Client identities: the control plane's own components get their bootstrap RBAC names; the operators (kwok,
# Karpenter, KubeRay) are cluster admins here, as their Helm charts' ClusterRoles are close to that anyway.
CLIENTS = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kwok": ("kwok-controller", ("system:masters",)),
    "karpenter": ("karpenter", ("system:masters",)),
    "kuberay": ("kuberay-operator", ("system:masters",)),
}


def write_pki(pki: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("agentic-local-ca", ca_key, ca=True)
    (pki / "ca.key").write_bytes(_pem_key(ca_key))
    (pki / "ca.crt").write_bytes(_pem_cert(ca))
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    key = _key()
    sans = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    cert = _cert("kube-apiserver", key, ca, ca_key, sans=sans, ips=["127.0.0.1", service_ip], server=True)
    (pki / "apiserver.key").write_bytes(_pem_key(key))
    (pki / "apiserver.crt").write_bytes(_pem_cert(cert))
    for name, (cn, orgs) in CLIENTS.items():
        key = _key()
        (pki / f"{name}.key").write_bytes(_pem_key(key))
        (pki / f"{name}.crt").write_bytes(_pem_cert(_cert(cn, key, ca, ca_key, orgs=orgs)))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(_pem_key(sa))
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for p in pki.iterdir():
        p.chmod(0o600)


def kubeconfig(server: str, pki: Path, user: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "agentic-local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")},
            }
        ],
        "contexts": [{"name": "agentic-local", "context": {"cluster": "agentic-local", "user": user}}],
        "current-context": "agentic-local",
    }
