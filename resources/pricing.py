"""Prices: the dated price book shipped with the project, refreshed from the AWS Price List API when credentials exist.

The shipped book (``infra/prices/aws-prices.json``) is what tests and the local profile use; nothing reaches AWS
unless ``refresh`` is called. Refresh updates the EC2 and OpenSearch instance-hour prices the bill of materials uses,
from the Price List API (``pricing`` in us-east-1, the API's home region), and records where each came from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from core.cost import PRICE_FILE, PriceBook, price_book_from
from resources.state_store import PipelineStateStore

REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
}


def _on_demand_usd(price_list_item: str) -> float:
    item = json.loads(price_list_item)
    for term in item["terms"]["OnDemand"].values():
        for dim in term["priceDimensions"].values():
            usd = float(dim["pricePerUnit"]["USD"])
            if usd > 0:
                return usd
    raise ValueError(f"no on-demand USD price in {item.get('product', {}).get('sku')}")


# where a refreshed book lives in the state store: every step (a pod of its own on eks) reads it from there
REFRESHED_KEY = "cost/aws-prices.refreshed.json"


class PriceBookResource(dg.ConfigurableResource):
    """The shipped book, or the one a refresh wrote to the state store (read first when it covers the region)."""

    state: PipelineStateStore
    path: str = ""  # default: the shipped book

    def _shipped(self) -> dict:
        return json.loads((Path(self.path) if self.path else PRICE_FILE).read_text())

    def load(self, region: str) -> PriceBook:
        refreshed = self.state.read_json(REFRESHED_KEY)
        if refreshed and region in refreshed["regions"]:
            return price_book_from(refreshed, region)
        return price_book_from(self._shipped(), region)

    def refresh(self, client, region: str) -> dict:
        """Fetch the instance-hour prices the book holds for ``region`` from the Price List API; returns what changed."""
        base = self.state.read_json(REFRESHED_KEY) or self._shipped()
        prices = base["regions"].setdefault(region, json.loads(json.dumps(base["regions"]["us-east-1"])))
        changed = {}
        for key, entry in prices.items():
            if key.startswith("ec2_") and key.endswith("_hour"):
                service, filters = (
                    "AmazonEC2",
                    [
                        ("instanceType", key[4:-5]),
                        ("operatingSystem", "Linux"),
                        ("tenancy", "Shared"),
                        ("preInstalledSw", "NA"),
                        ("capacitystatus", "Used"),
                        ("regionCode", region),
                    ],
                )
            elif key.startswith("opensearch_") and key.endswith("_hour"):
                service, filters = "AmazonES", [("instanceType", key[11:-5]), ("regionCode", region)]
            else:
                continue
            resp = client.get_products(
                ServiceCode=service,
                Filters=[{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters],
                FormatVersion="aws_v1",
                MaxResults=10,
            )
            if not resp.get("PriceList"):
                continue
            usd = _on_demand_usd(resp["PriceList"][0])
            if abs(usd - entry["usd"]) > 1e-9:
                changed[key] = {"was": entry["usd"], "now": usd}
            entry.update(
                usd=usd, source=f"AWS Price List API ({service}, {region}) {time.strftime('%Y-%m-%d', time.gmtime())}"
            )
        base["as_of"] = time.strftime("%Y-%m", time.gmtime())
        self.state.write_json(REFRESHED_KEY, base)  # one atomic object; the shipped book is never rewritten
        return changed
