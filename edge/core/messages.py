"""What a gate display says for each decision, in English, German and French."""

from __future__ import annotations

from datetime import datetime, tzinfo

from edge.core.decide import Decision, Reason

LANGUAGES = ("en", "de", "fr")

# {time}: an earlier passage, local time; {gate}: where it was; {date}: a validity bound;
# {remaining}: entries left. Every reason has a text in every language (a test checks).
TEXTS: dict[Reason, dict[str, str]] = {
    Reason.ADMITTED: {"en": "Welcome", "de": "Willkommen", "fr": "Bienvenue"},
    Reason.EXIT: {"en": "Goodbye", "de": "Auf Wiedersehen", "fr": "Au revoir"},
    Reason.MALFORMED: {
        "en": "Code not readable - please scan again",
        "de": "Code nicht lesbar - bitte erneut scannen",
        "fr": "Code illisible - veuillez scanner à nouveau",
    },
    Reason.UNKNOWN: {
        "en": "Unknown ticket",
        "de": "Unbekanntes Ticket",
        "fr": "Billet inconnu",
    },
    Reason.UNKNOWN_KEY: {
        "en": "Ticket not valid here (unknown issuer)",
        "de": "Ticket hier nicht gültig (unbekannter Aussteller)",
        "fr": "Billet non valable ici (émetteur inconnu)",
    },
    Reason.KEY_RETIRED: {
        "en": "Ticket no longer valid (issuer key withdrawn)",
        "de": "Ticket nicht mehr gültig (Schlüssel zurückgezogen)",
        "fr": "Billet plus valable (clé de l'émetteur retirée)",
    },
    Reason.BAD_SIGNATURE: {
        "en": "Invalid ticket (signature check failed)",
        "de": "Ungültiges Ticket (Signaturprüfung fehlgeschlagen)",
        "fr": "Billet invalide (signature incorrecte)",
    },
    Reason.REVOKED: {
        "en": "Ticket revoked",
        "de": "Ticket gesperrt",
        "fr": "Billet révoqué",
    },
    Reason.REPLACED: {
        "en": "Card replaced - please use the new card",
        "de": "Karte ersetzt - bitte die neue Karte verwenden",
        "fr": "Carte remplacée - veuillez utiliser la nouvelle carte",
    },
    Reason.CANCELLED: {
        "en": "Sale cancelled",
        "de": "Verkauf storniert",
        "fr": "Vente annulée",
    },
    Reason.EVENT_CANCELLED: {
        "en": "Event cancelled",
        "de": "Veranstaltung abgesagt",
        "fr": "Événement annulé",
    },
    Reason.VOUCHER: {
        "en": "Voucher - please redeem at the counter",
        "de": "Gutschein - bitte an der Kasse einlösen",
        "fr": "Bon - à échanger au guichet",
    },
    Reason.UNPAID: {
        "en": "Not paid yet - please go to the counter",
        "de": "Noch nicht bezahlt - bitte zur Kasse",
        "fr": "Pas encore payé - veuillez passer au guichet",
    },
    Reason.WRONG_GATE: {
        "en": "Not valid at this entrance",
        "de": "An diesem Eingang nicht gültig",
        "fr": "Non valable à cette entrée",
    },
    Reason.WRONG_ZONE: {
        "en": "Not valid for this area",
        "de": "Für diesen Bereich nicht gültig",
        "fr": "Non valable pour cette zone",
    },
    Reason.NOT_YET_VALID: {
        "en": "Not valid yet - valid from {date}",
        "de": "Noch nicht gültig - gültig ab {date}",
        "fr": "Pas encore valable - valable à partir du {date}",
    },
    Reason.EXPIRED: {
        "en": "Expired on {date}",
        "de": "Abgelaufen am {date}",
        "fr": "Expiré le {date}",
    },
    Reason.ALREADY_USED: {
        "en": "Already used at {time}, {gate}",
        "de": "Bereits benutzt um {time}, {gate}",
        "fr": "Déjà utilisé à {time}, {gate}",
    },
    Reason.PASSBACK: {
        "en": "Already inside since {time} ({gate})",
        "de": "Bereits eingetreten um {time} ({gate})",
        "fr": "Déjà entré à {time} ({gate})",
    },
}

_UNKNOWN = {"en": "unknown", "de": "unbekannt", "fr": "inconnu"}
_REMAINING = {
    "en": " - {remaining} entries left",
    "de": " - noch {remaining} Eintritte",
    "fr": " - encore {remaining} entrées",
}


def _local(moment: datetime | None, fmt: str, zone: tzinfo | None) -> str | None:
    return moment.astimezone(zone).strftime(fmt) if moment is not None else None


def text(decision: Decision, language: str = "en", zone: tzinfo | None = None) -> str:
    """The display text for a decision; times in `zone` (default: the device's local zone)."""
    unknown = _UNKNOWN[language]
    message = TEXTS[decision.reason][language].format(
        time=_local(decision.at, "%d.%m. %H:%M", zone) or unknown,
        gate=decision.gate or unknown,
        date=_local(decision.until, "%d.%m.%Y %H:%M", zone) or unknown,
    )
    if decision.reason is Reason.ADMITTED and decision.remaining:
        message += _REMAINING[language].format(remaining=decision.remaining)
    return message
