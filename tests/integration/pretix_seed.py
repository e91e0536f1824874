"""Seed a fresh pretix: run by pretix's own Python (not edge's), prints what it made as JSON.

Usage: PRETIX_CONFIG_FILE=pretix.cfg python pretix_seed.py. It creates an organizer, a team
with every permission and an API token, a device with its token, an event using the
pretix_sig1 secret generator with two products, a quota and two check-in lists limited to
the first product, and a second event with random secrets, two products, two lists for
all products and two for the first one only. Orders
are placed by the test through the REST API, as a box office or shop would.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")
django.setup()

from django.utils.timezone import now  # noqa: E402
from django_scopes import scopes_disabled  # noqa: E402  (needs django.setup())
from pretix.base.models import (  # noqa: E402
    CheckinList,
    Device,
    Event,
    Gate,
    Item,
    ItemAddOn,
    ItemCategory,
    ItemVariation,
    Organizer,
    Quota,
    SubEvent,
    Team,
    TeamAPIToken,
)


@scopes_disabled()  # type: ignore[untyped-decorator]  # django-scopes is not installed here
def seed() -> dict[str, object]:
    """Create the organizer, event, products, quota, check-in list and a team token."""
    organizer = Organizer.objects.create(name="Edge Test Venue", slug="edgetest")
    team = Team.objects.create(
        organizer=organizer,
        name="edge gates",
        all_events=True,
        all_event_permissions=True,
        all_organizer_permissions=True,
    )
    token = TeamAPIToken.objects.create(team=team, name="edge")
    # A device as pretix's device initialisation leaves it: the gate's other way in.
    device = Device.objects.create(
        organizer=organizer,
        name="edge gate",
        all_events=True,
        api_token=TeamAPIToken().token,  # a fresh random token of the same shape
        initialized=now(),
        hardware_brand="edge",
        hardware_model="gate",
        software_brand="edge",
        software_version="0.1",
    )
    start = datetime.now(UTC) - timedelta(hours=1)
    event = Event.objects.create(
        organizer=organizer,
        name="Open Air",
        slug="openair",
        date_from=start,
        date_to=start + timedelta(days=1),
        live=True,
        currency="EUR",
    )
    event.settings.ticket_secret_generator = "pretix_sig1"
    event.settings.timezone = "UTC"
    admission = Item.objects.create(event=event, name="Admission", default_price=Decimal(10))
    parking = Item.objects.create(event=event, name="Parking", default_price=Decimal(5))
    quota = Quota.objects.create(event=event, name="All", size=None)
    quota.items.add(admission, parking)
    checkin_list = CheckinList.objects.create(event=event, name="Main gate", all_products=False)
    checkin_list.limit_products.add(admission)
    # The same rules again: the test scans online here to get pretix's own answers, while
    # the gate's offline check-ins go to the main list.
    mirror = CheckinList.objects.create(event=event, name="Online mirror", all_products=False)
    mirror.limit_products.add(admission)
    # A second event with pretix's default random secrets: the gate knows them from a pull.
    museum = Event.objects.create(
        organizer=organizer,
        name="Museum",
        slug="museum",
        date_from=start,
        date_to=start + timedelta(days=1),
        live=True,
        currency="EUR",
    )
    museum.settings.timezone = "UTC"
    day = Item.objects.create(event=museum, name="Day ticket", default_price=Decimal(12))
    guide = Item.objects.create(event=museum, name="Audio guide", default_price=Decimal(3))
    museum_quota = Quota.objects.create(event=museum, name="All", size=None)
    museum_quota.items.add(day, guide)
    museum_list = CheckinList.objects.create(event=museum, name="Entrance", all_products=True)
    museum_mirror = CheckinList.objects.create(event=museum, name="Mirror", all_products=True)
    # Lists that admit day tickets only (random secrets: a product change keeps the secret).
    limited = CheckinList.objects.create(event=museum, name="Day hall", all_products=False)
    limited.limit_products.add(day)
    limited_mirror = CheckinList.objects.create(
        event=museum, name="Day hall mirror", all_products=False
    )
    limited_mirror.limit_products.add(day)
    rules = _rules_event(organizer, start)
    series = _series_event(organizer, start)
    gate = Gate.objects.create(organizer=organizer, name="North", identifier="north")
    return {
        "rules": rules,
        "series": series,
        "gate": gate.pk,
        "museum": {
            "event": museum.slug,
            "item": day.pk,
            "guide": guide.pk,
            "list": museum_list.pk,
            "mirror": museum_mirror.pk,
            "limited": limited.pk,
            "limited_mirror": limited_mirror.pk,
        },
        "organizer": organizer.slug,
        "event": event.slug,
        "event_id": event.pk,
        "token": token.token,
        "device_token": device.api_token,
        "admission": admission.pk,
        "parking": parking.pk,
        "list": checkin_list.pk,
        "mirror": mirror.pk,
    }


def _rules_event(organizer: Organizer, start: datetime) -> dict[str, object]:
    """An event in Berlin time with random secrets for the rules and decision tests: two
    products (one with variations), an add-on product, one quota; lists come per test."""
    event = Event.objects.create(
        organizer=organizer,
        name="Rules",
        slug="rules",
        date_from=start,
        date_to=start + timedelta(days=3),
        date_admission=start - timedelta(hours=1),
        live=True,
        currency="EUR",
    )
    event.settings.timezone = "Europe/Berlin"
    admission = Item.objects.create(event=event, name="Admission", default_price=Decimal(10))
    red = ItemVariation.objects.create(item=admission, value="Red")
    blue = ItemVariation.objects.create(item=admission, value="Blue")
    parking = Item.objects.create(event=event, name="Parking", default_price=Decimal(5))
    extras = ItemCategory.objects.create(event=event, name="Extras", is_addon=True)
    vip = Item.objects.create(
        event=event, name="VIP lounge", default_price=Decimal(20), category=extras
    )
    ItemAddOn.objects.create(base_item=admission, addon_category=extras, max_count=2)
    quota = Quota.objects.create(event=event, name="All", size=None)
    quota.items.add(admission, parking, vip)
    quota.variations.add(red, blue)
    return {
        "event": event.slug,
        "admission": admission.pk,
        "red": red.pk,
        "blue": blue.pk,
        "parking": parking.pk,
        "vip": vip.pk,
    }


def _series_event(organizer: Organizer, start: datetime) -> dict[str, object]:
    """An event series with two dates and one product, pretix_sig1 secrets."""
    event = Event.objects.create(
        organizer=organizer,
        name="Series",
        slug="series",
        date_from=start,
        live=True,
        currency="EUR",
        has_subevents=True,
    )
    event.settings.timezone = "UTC"
    event.settings.ticket_secret_generator = "pretix_sig1"
    item = Item.objects.create(event=event, name="Day", default_price=Decimal(8))
    dates = []
    for day in (0, 1):
        sub = SubEvent.objects.create(
            event=event,
            name=f"Day {day + 1}",
            date_from=start + timedelta(days=day),
            date_to=start + timedelta(days=day, hours=8),
            active=True,
        )
        quota = Quota.objects.create(event=event, subevent=sub, name="All", size=None)
        quota.items.add(item)
        dates.append(sub.pk)
    return {"event": event.slug, "item": item.pk, "subevents": dates}


if __name__ == "__main__":
    print(json.dumps(seed()))
