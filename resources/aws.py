"""AWS: boto3 clients for the platform and cost assets.

Credentials come from boto3's own chain (environment, SSO profile, Pod Identity in the cluster); nothing is stored
here. ``endpoint_url`` points every client at an emulator (moto in tests); boto3 also honours ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import dagster as dg


class AWSResource(dg.ConfigurableResource):
    region: str = "us-east-1"
    profile: str = ""
    endpoint_url: str = ""

    def session(self):
        import boto3

        return boto3.session.Session(profile_name=self.profile or None, region_name=self.region)

    def client(self, service: str, region: str | None = None):
        kwargs = {"region_name": region or self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return self.session().client(service, **kwargs)

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    def has_credentials(self) -> bool:
        return self.session().get_credentials() is not None
