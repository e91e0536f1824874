"""What a gate display says for each decision, in English, German and French."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

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
    Reason.BLOCKED: {
        "en": "Ticket blocked - please go to the counter",
        "de": "Ticket blockiert - bitte zur Kasse",
        "fr": "Billet bloqué - veuillez passer au guichet",
    },
    Reason.UNAPPROVED: {
        "en": "Order not approved yet",
        "de": "Bestellung noch nicht freigegeben",
        "fr": "Commande pas encore approuvée",
    },
    Reason.RULES: {
        "en": "Entry not permitted now",
        "de": "Einlass jetzt nicht erlaubt",
        "fr": "Entrée non autorisée maintenant",
    },
    Reason.AMBIGUOUS: {
        "en": "Several tickets match - please go to the counter",
        "de": "Mehrere Tickets passen - bitte zur Kasse",
        "fr": "Plusieurs billets correspondent - veuillez passer au guichet",
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


# Short labels for a list of decisions (the status page), where no time or date is at hand.
_SHORT = {
    Reason.NOT_YET_VALID: {
        "en": "Not valid yet",
        "de": "Noch nicht gültig",
        "fr": "Pas encore valable",
    },
    Reason.EXPIRED: {"en": "Expired", "de": "Abgelaufen", "fr": "Expiré"},
    Reason.ALREADY_USED: {"en": "Already used", "de": "Bereits benutzt", "fr": "Déjà utilisé"},
    Reason.PASSBACK: {"en": "Already inside", "de": "Bereits eingetreten", "fr": "Déjà entré"},
}


def reason_label(reason: Reason, language: str = "en") -> str:
    """A decision's reason as a list shows it: the display text without times or places."""
    short = _SHORT.get(reason)
    return short[language] if short is not None else TEXTS[reason][language]


# What the counter's pages and its pass desk say, by key: (English, German, French). Errors of
# the desk (edge.counter.desk.DeskError) carry one of the "error." keys and its {placeholders}.
UI: dict[str, tuple[str, str, str]] = {
    # navigation and the token step
    "nav.status": ("Device status", "Gerätestatus", "État de l'appareil"),
    "nav.desk": ("Pass desk", "Jahreskarten", "Abonnements"),
    "token.title": (
        "Sign in to this device",
        "An diesem Gerät anmelden",
        "Se connecter à l'appareil",
    ),
    "token.explain": (
        (
            "This page needs the device's access token once per browser session. It is in "
            "the file {file} on the device (ask your administrator). Scan or paste it here."
        ),
        (
            "Diese Seite braucht einmal pro Browser-Sitzung den Zugangsschlüssel des Geräts. "
            "Er steht in der Datei {file} auf dem Gerät (fragen Sie Ihre Administration). "
            "Scannen oder einfügen."
        ),
        (
            "Cette page demande une fois par session le jeton d'accès de l'appareil. Il se "
            "trouve dans le fichier {file} sur l'appareil (demandez à votre administrateur). "
            "Scannez-le ou collez-le ici."
        ),
    ),
    "token.label": ("Access token", "Zugangsschlüssel", "Jeton d'accès"),
    "token.submit": ("Sign in", "Anmelden", "Se connecter"),
    "token.wrong": (
        "This token is not accepted: check it and try again.",
        "Dieser Schlüssel wird nicht angenommen: bitte prüfen und erneut versuchen.",
        "Ce jeton n'est pas accepté : vérifiez-le et réessayez.",
    ),
    "token.change": ("Sign out", "Abmelden", "Se déconnecter"),
    "net.unreachable": (
        "The device does not answer. Is it running?",
        "Das Gerät antwortet nicht. Läuft es?",
        "L'appareil ne répond pas. Est-il en marche ?",
    ),
    "working": ("Working…", "Bitte warten…", "Un instant…"),
    "updated": ("Updated {time}", "Aktualisiert {time}", "Mis à jour {time}"),
    # desk: scanning
    "desk.title": ("Annual-pass desk", "Jahreskarten-Schalter", "Guichet des abonnements"),
    "desk.scanner.ready": (
        "Scanner ready: {names}",
        "Scanner bereit: {names}",
        "Scanner prêt : {names}",
    ),
    "desk.scanner.none": (
        "No scanner on this desk: type or paste the code",
        "Kein Scanner an diesem Platz: Code eintippen oder einfügen",
        "Pas de scanner à ce guichet : saisissez ou collez le code",
    ),
    "desk.scanner.off": (
        "Scanner not connected",
        "Scanner nicht verbunden",
        "Scanner non connecté",
    ),
    "desk.idle": (
        "Scan a voucher or pass card",
        "Gutschein oder Jahreskarte scannen",
        "Scannez un bon ou une carte d'abonnement",
    ),
    "desk.idle.hint": (
        "or type a pass number and press Enter",
        "oder Kartennummer eingeben und Enter drücken",
        "ou saisissez un numéro d'abonnement et appuyez sur Entrée",
    ),
    "desk.code": (
        "Voucher or card code",
        "Gutschein- oder Kartencode",
        "Code du bon ou de la carte",
    ),
    "desk.number": ("Pass number", "Kartennummer", "Numéro d'abonnement"),
    "desk.lookup": ("Look up", "Suchen", "Rechercher"),
    "desk.new": ("Next customer (Esc)", "Nächster Kunde (Esc)", "Client suivant (Échap)"),
    # desk: what was found
    "found.voucher": (
        "Voucher: ready to issue",
        "Gutschein: bereit zur Ausgabe",
        "Bon : prêt à émettre",
    ),
    "found.pass": ("Annual pass", "Jahreskarte", "Abonnement annuel"),
    "found.ticket": ("Day ticket", "Tageskarte", "Billet du jour"),
    "found.other": ("Found: {kind}", "Gefunden: {kind}", "Trouvé : {kind}"),
    "found.offline": (
        "The central system cannot be reached: this is the counter's own copy.",
        "Die Zentrale ist nicht erreichbar: Angaben aus der Kopie dieses Geräts.",
        "Le système central est injoignable : données de la copie locale.",
    ),
    "found.redeemed": (
        "This voucher has been redeemed already",
        "Dieser Gutschein wurde bereits eingelöst",
        "Ce bon a déjà été utilisé",
    ),
    "found.inactive": ("This {kind} is {state}", "{kind}: {state}", "{kind} : {state}"),
    "sale.number": ("Number", "Nummer", "Numéro"),
    "sale.sale": ("Sale", "Verkauf", "Vente"),
    "sale.product": ("Product", "Produkt", "Produit"),
    "sale.state": ("State", "Status", "État"),
    "sale.holder": ("Holder", "Inhaber", "Titulaire"),
    "sale.buyer": ("Buyer", "Käufer", "Acheteur"),
    "sale.valid": ("Valid", "Gültig", "Valable"),
    "sale.valid.range": ("{start} to {end}", "{start} bis {end}", "du {start} au {end}"),
    "sale.pass": ("Pass issued", "Ausgegebene Karte", "Abonnement émis"),
    "sale.voucher": ("Voucher", "Gutschein", "Bon"),
    "heading.voucher": ("Voucher", "Gutschein", "Bon"),
    "heading.pass": ("Annual pass", "Jahreskarte", "Abonnement annuel"),
    "heading.ticket": ("Day ticket", "Tageskarte", "Billet du jour"),
    "kind.voucher": ("voucher", "Gutschein", "bon"),
    "kind.pass": ("annual pass", "Jahreskarte", "abonnement"),
    "kind.ticket": ("day ticket", "Tageskarte", "billet"),
    "state.active": ("valid", "gültig", "valable"),
    "state.redeemed": ("redeemed", "eingelöst", "utilisé"),
    "state.issued": ("issued", "ausgegeben", "émis"),
    "state.revoked": ("revoked", "gesperrt", "révoqué"),
    "state.replaced": ("replaced", "ersetzt", "remplacé"),
    "state.cancelled": ("cancelled", "storniert", "annulé"),
    # desk: the issue form
    "form.title": ("Personalise the pass", "Karte personalisieren", "Personnaliser l'abonnement"),
    "form.surname": ("Surname", "Nachname", "Nom"),
    "form.first_name": ("First name", "Vorname", "Prénom"),
    "form.address": ("Address", "Adresse", "Adresse"),
    "form.no_address": ("No address (Alt+N)", "Keine Adresse (Alt+N)", "Sans adresse (Alt+N)"),
    "form.valid_from": ("Valid from", "Gültig ab", "Valable à partir du"),
    "form.shipping": ("Card", "Karte", "Carte"),
    "form.pickup": ("Hand over now", "Jetzt übergeben", "Remise immédiate"),
    "form.post": ("Send by post", "Per Post senden", "Envoi postal"),
    "form.day_format": ("DD/MM/YYYY", "TT.MM.JJJJ", "JJ/MM/AAAA"),
    "form.submit": (
        "Print card and issue (Enter)",
        "Karte drucken und ausgeben (Enter)",
        "Imprimer la carte et émettre (Entrée)",
    ),
    "form.printing": (
        "Printing the card…",
        "Karte wird gedruckt…",
        "Impression de la carte…",
    ),
    # desk: results
    "done.issued": ("Pass issued", "Karte ausgegeben", "Abonnement émis"),
    "done.issued.detail": (
        "{holder}, valid until {until}. Card {card}.",
        "{holder}, gültig bis {until}. Karte {card}.",
        "{holder}, valable jusqu'au {until}. Carte {card}.",
    ),
    "done.chip": ("Chip {uid} bound.", "Chip {uid} zugeordnet.", "Puce {uid} associée."),
    "done.sent": (
        "Confirmed by the central system.",
        "Von der Zentrale bestätigt.",
        "Confirmé par le système central.",
    ),
    "done.queued": (
        "The central system is not reachable: it is sent as soon as it is.",
        "Die Zentrale ist nicht erreichbar: wird nachgemeldet, sobald sie es ist.",
        "Le système central est injoignable : envoi dès qu'il le sera.",
    ),
    "done.extended": (
        "Extended until {until}",
        "Verlängert bis {until}",
        "Prolongé jusqu'au {until}",
    ),
    "done.reprinted": (
        "The card was reprinted.",
        "Die Karte wurde neu gedruckt.",
        "La carte a été réimprimée.",
    ),
    "done.scan_to_reprint": (
        "The card shows its validity: scan it to reprint it.",
        "Die Karte zeigt die Gültigkeit: zum Neudruck scannen.",
        "La carte affiche sa validité : scannez-la pour la réimprimer.",
    ),
    "done.replaced": ("New card printed", "Neue Karte gedruckt", "Nouvelle carte imprimée"),
    "done.replaced.detail": (
        "Card {card}. The old card no longer opens any gate.",
        "Karte {card}. Die alte Karte öffnet kein Drehkreuz mehr.",
        "Carte {card}. L'ancienne carte n'ouvre plus aucune entrée.",
    ),
    "done.cancelled": ("Sale cancelled", "Verkauf storniert", "Vente annulée"),
    "done.ticket": (
        "Ticket sent to printer {printer}",
        "Ticket an Drucker {printer} gesendet",
        "Billet envoyé à l'imprimante {printer}",
    ),
    "done.terms": (
        "Terms sent to printer {printer} ({pages} tickets)",
        "AGB an Drucker {printer} gesendet ({pages} Tickets)",
        "CGV envoyées à l'imprimante {printer} ({pages} billets)",
    ),
    "action.ticket": ("Print ticket", "Ticket drucken", "Imprimer le billet"),
    "action.terms": ("Print terms (Alt+T)", "AGB drucken (Alt+T)", "Imprimer les CGV (Alt+T)"),
    "action.extend": ("Extend", "Verlängern", "Prolonger"),
    "action.replace": (
        "Lost card: replace",
        "Karte verloren: ersetzen",
        "Carte perdue : remplacer",
    ),
    "action.cancel": ("Cancel sale", "Verkauf stornieren", "Annuler la vente"),
    "confirm.replace": (
        "Replace the card of pass {number}? The old card stops working.",
        "Karte {number} ersetzen? Die alte Karte wird gesperrt.",
        "Remplacer la carte de l'abonnement {number} ? L'ancienne carte sera bloquée.",
    ),
    "confirm.cancel": (
        "Cancel this sale? Its codes stop working everywhere.",
        "Diesen Verkauf stornieren? Seine Codes werden überall gesperrt.",
        "Annuler cette vente ? Ses codes seront bloqués partout.",
    ),
    # status page
    "status.title": ("Device {device}", "Gerät {device}", "Appareil {device}"),
    "status.sync": ("Central system", "Zentrale", "Système central"),
    "status.sync.none": (
        "Not connected to a central system (offline device)",
        "Mit keiner Zentrale verbunden (Offline-Gerät)",
        "Non relié à un système central (appareil hors ligne)",
    ),
    "status.sync.status": ("Connection", "Verbindung", "Connexion"),
    "status.sync.current": ("up to date", "aktuell", "à jour"),
    "status.sync.behind": ("catching up", "holt auf", "en rattrapage"),
    "status.sync.offline": ("offline", "offline", "hors ligne"),
    "status.sync.starting": ("starting", "startet", "démarrage"),
    "status.sync.revision": ("Data version", "Datenstand", "Version des données"),
    "status.sync.lag": (
        "{lag} changes behind",
        "{lag} Änderungen zurück",
        "{lag} modifications de retard",
    ),
    "status.sync.contact": ("Last contact", "Letzter Kontakt", "Dernier contact"),
    "status.sync.error": ("Last error", "Letzter Fehler", "Dernière erreur"),
    "status.pretix.pull": ("Last pull", "Letzter Abgleich", "Dernière synchronisation"),
    "status.pretix.uploaded": ("Check-ins sent", "Gesendete Check-ins", "Check-ins envoyés"),
    "status.pretix.refused": (
        "Refused by pretix",
        "Von pretix abgelehnt",
        "Refusés par pretix",
    ),
    "status.pretix.refusals": (
        "Check-ins pretix refused",
        "Von pretix abgelehnte Check-ins",
        "Check-ins refusés par pretix",
    ),
    "status.sync.clock": (
        "Clock offset to the central system (s)",
        "Uhrabweichung zum Zentralsystem (s)",
        "Écart d'horloge avec le système central (s)",
    ),
    "status.never": ("never", "nie", "jamais"),
    "status.queues": ("Waiting to be sent", "Noch zu senden", "En attente d'envoi"),
    "status.queue.journal": ("Gate passages", "Durchgänge", "Passages"),
    "status.queue.print": ("Print jobs", "Druckaufträge", "Impressions"),
    "status.queue.desk": ("Desk operations", "Schalter-Vorgänge", "Opérations du guichet"),
    "status.printers": ("Printers", "Drucker", "Imprimantes"),
    "status.printer.kind.ticket": ("tickets", "Tickets", "billets"),
    "status.printer.kind.card": ("cards", "Karten", "cartes"),
    "status.printer.pending": ("{count} waiting", "{count} wartend", "{count} en attente"),
    "status.printer.paused": ("paused: {why}", "angehalten: {why}", "en pause : {why}"),
    "status.scanners": ("Scanners", "Scanner", "Scanners"),
    "status.scanners.none": (
        "No scanner on this device",
        "Kein Scanner an diesem Gerät",
        "Aucun scanner",
    ),
    "status.scanner.last": ("last scan {time}", "letzter Scan {time}", "dernier scan {time}"),
    "status.decisions": ("Last passages", "Letzte Durchgänge", "Derniers passages"),
    "status.decisions.none": ("No passages yet", "Noch keine Durchgänge", "Aucun passage"),
    "status.desk": ("Desk operations", "Schalter-Vorgänge", "Opérations du guichet"),
    "status.desk.none": ("No desk operations yet", "Noch keine Vorgänge", "Aucune opération"),
    "col.time": ("Time", "Zeit", "Heure"),
    "col.lane": ("Lane", "Spur", "Voie"),
    "col.direction": ("Direction", "Richtung", "Sens"),
    "col.result": ("Result", "Ergebnis", "Résultat"),
    "col.code": ("Code", "Code", "Code"),
    "col.operation": ("Operation", "Vorgang", "Opération"),
    "col.state": ("State", "Status", "État"),
    "col.detail": ("Detail", "Details", "Détail"),
    "direction.entry": ("in", "hinein", "entrée"),
    "direction.exit": ("out", "hinaus", "sortie"),
    "op.issue": ("Pass issued", "Karte ausgegeben", "Abonnement émis"),
    "op.extend": ("Pass extended", "Karte verlängert", "Abonnement prolongé"),
    "op.replace": ("Card replaced", "Karte ersetzt", "Carte remplacée"),
    "op.cancel": ("Sale cancelled", "Verkauf storniert", "Vente annulée"),
    "opstate.queued": ("waiting to be sent", "wartet auf Versand", "en attente d'envoi"),
    "opstate.sent": ("confirmed", "bestätigt", "confirmé"),
    "opstate.rejected": ("refused", "abgelehnt", "refusé"),
    "printer.ready": ("ready", "bereit", "prête"),
    "printer.offline": ("not reachable", "nicht erreichbar", "injoignable"),
    "printer.unknown": (
        "no status (one-way connection)",
        "kein Status (nur sendend)",
        "pas d'état (liaison à sens unique)",
    ),
    "printer.busy": ("printing", "druckt", "impression"),
    "printer.paper-out": (
        "out of paper: refill",
        "Papier leer: nachfüllen",
        "plus de papier : recharger",
    ),
    "printer.jam": (
        "jammed: needs staff",
        "Stau: bitte beheben",
        "bourrage : intervention requise",
    ),
    "printer.head-open": ("print head open", "Druckkopf offen", "tête d'impression ouverte"),
    "printer.error": ("fault", "Störung", "panne"),
    "status.sync.bootstrapping": ("loading all data", "lädt alle Daten", "chargement des données"),
    "status.op.pass": ("pass no. {number}", "Karte Nr. {number}", "abonnement n° {number}"),
    "status.op.until": ("valid until {date}", "gültig bis {date}", "valable jusqu'au {date}"),
    # desk errors (DeskError keys)
    "error.required": ("{label} is required", "{label} fehlt", "{label} est obligatoire"),
    "error.too_long": (
        "{label}: at most {max} printable characters",
        "{label}: höchstens {max} druckbare Zeichen",
        "{label} : {max} caractères imprimables au plus",
    ),
    "error.unprintable": (
        "{label}: the card printer cannot print “{char}”",
        "{label}: der Kartendrucker kann „{char}“ nicht drucken",
        "{label} : l'imprimante de cartes ne sait pas imprimer « {char} »",
    ),
    "error.scan_voucher": (
        "Scan a voucher first",
        "Zuerst einen Gutschein scannen",
        "Scannez d'abord un bon",
    ),
    "error.valid_from": (
        "Validity start is required",
        "Gültig-ab-Datum fehlt",
        "La date de début est obligatoire",
    ),
    "error.shipping": (
        "Shipping: choose post or pickup",
        "Versand: Post oder Übergabe wählen",
        "Envoi : choisissez poste ou remise",
    ),
    "error.scan_or_number": (
        "Scan a code or type a pass number",
        "Code scannen oder Kartennummer eingeben",
        "Scannez un code ou saisissez un numéro",
    ),
    "error.number_offline": (
        "Pass {number} is not in this counter's copy and the central system cannot be reached",
        "Karte {number} ist nicht in der Kopie dieses Geräts und die Zentrale nicht erreichbar",
        "Le numéro {number} n'est pas dans la copie locale et le système central est injoignable",
    ),
    "error.not_a_code": (
        "This is not a code of this venue: {detail}",
        "Das ist kein Code dieses Hauses: {detail}",
        "Ce n'est pas un code de ce lieu : {detail}",
    ),
    "error.foreign": (
        "Not a code of this venue (its issuer is unknown here)",
        "Kein Code dieses Hauses (Aussteller unbekannt)",
        "Pas un code de ce lieu (émetteur inconnu)",
    ),
    "error.unknown_code": (
        "Unknown code: no sale of this venue has it",
        "Unbekannter Code: kein Verkauf dieses Hauses",
        "Code inconnu : aucune vente de ce lieu",
    ),
    "error.not_voucher": (
        "This code is a {kind}, not a pass voucher",
        "Dieser Code ist: {kind}, kein Gutschein für eine Jahreskarte",
        "Ce code est : {kind}, pas un bon d'abonnement",
    ),
    "error.voucher_state": (
        "This voucher is {state} already",
        "Dieser Gutschein ist bereits {state}",
        "Ce bon est déjà {state}",
    ),
    "error.scan_pass": (
        "Scan the pass card to extend",
        "Zum Verlängern die Karte scannen",
        "Scannez la carte pour la prolonger",
    ),
    "error.pass_state": (
        "This pass is {state}; it cannot be changed",
        "Diese Karte ist {state}; sie kann nicht geändert werden",
        "Cet abonnement est {state} ; il ne peut être modifié",
    ),
    "error.pass_number": ("Give the pass number", "Kartennummer angeben", "Indiquez le numéro"),
    "error.no_ticket_template": (
        "This desk prints no tickets (no ticket layout is configured)",
        "Dieser Platz druckt keine Tickets (kein Ticket-Layout eingerichtet)",
        "Ce guichet n'imprime pas de billets (aucune mise en page configurée)",
    ),
    "error.no_card_template": (
        "This desk prints no cards (no card layout is configured)",
        "Dieser Platz druckt keine Karten (kein Karten-Layout eingerichtet)",
        "Ce guichet n'imprime pas de cartes (aucune mise en page configurée)",
    ),
    "error.no_terms": (
        "No terms are configured for this desk",
        "Für diesen Platz sind keine AGB eingerichtet",
        "Aucune CGV n'est configurée pour ce guichet",
    ),
    "error.ticket_kind": (
        "This code is a {kind}; tickets are for vouchers and day tickets",
        "Dieser Code ist: {kind}; Tickets gibt es für Gutscheine und Tageskarten",
        "Ce code est : {kind} ; les billets sont pour les bons et billets du jour",
    ),
    "error.ticket_state": (
        "This {kind} is {state}; no ticket printed",
        "{kind}: {state}; kein Ticket gedruckt",
        "{kind} : {state} ; aucun billet imprimé",
    ),
    "error.template_field": (
        "The {what} layout needs the field “{field}”, which the desk does not have",
        "Das {what}-Layout braucht das Feld „{field}“, das der Schalter nicht hat",
        "La mise en page {what} demande le champ « {field} », que le guichet n'a pas",
    ),
    "error.print": (
        "The {what} cannot be printed: {detail}",
        "{what} kann nicht gedruckt werden: {detail}",
        "{what} ne peut être imprimé(e) : {detail}",
    ),
    "error.card_failed": (
        "The card printer failed: {detail}. The pass was not issued.",
        "Der Kartendrucker meldet einen Fehler: {detail}. Die Karte wurde nicht ausgegeben.",
        "L'imprimante de cartes a échoué : {detail}. L'abonnement n'a pas été émis.",
    ),
    "error.not_found": (
        "Not found: {detail}",
        "Nicht gefunden: {detail}",
        "Introuvable : {detail}",
    ),
    "error.not_found.title": ("Not found", "Nicht gefunden", "Introuvable"),
    "error.card_failed.title": (
        "Card not printed: the pass was not issued",
        "Karte nicht gedruckt: nicht ausgegeben",
        "Carte non imprimée : abonnement non émis",
    ),
    "error.print.title": (
        "The {what} cannot be printed",
        "{what} kann nicht gedruckt werden",
        "{what} ne peut être imprimé(e)",
    ),
    "error.refused.title": (
        "The central system refused it",
        "Die Zentrale hat abgelehnt",
        "Le système central a refusé",
    ),
    "error.not_a_code.title": (
        "This is not a code of this venue",
        "Das ist kein Code dieses Hauses",
        "Ce n'est pas un code de ce lieu",
    ),
    "error.nfc_failed": (
        "The card's chip cannot be read: {detail}. Nothing was printed.",
        "Der Chip der Karte ist nicht lesbar: {detail}. Nichts wurde gedruckt.",
        "La puce de la carte est illisible : {detail}. Rien n'a été imprimé.",
    ),
    "error.nfc_failed.title": (
        "Put a blank card on the reader",
        "Leere Karte auf das Lesegerät legen",
        "Posez une carte vierge sur le lecteur",
    ),
    "error.card_timeout": (
        "no card after {seconds} s",
        "keine Karte nach {seconds} s",
        "pas de carte après {seconds} s",
    ),
    "error.refused": (
        "The central system refused it: {detail}",
        "Die Zentrale hat abgelehnt: {detail}",
        "Le système central a refusé : {detail}",
    ),
    "error.central": (
        "The central system answered something unexpected: {detail}",
        "Unerwartete Antwort der Zentrale: {detail}",
        "Réponse inattendue du système central : {detail}",
    ),
    "error.no_desk": (
        "This device has no pass desk",
        "Dieses Gerät hat keinen Abo-Schalter",
        "Cet appareil n'a pas de guichet",
    ),
    "error.bad_request": (
        "The request is not valid: {detail}",
        "Ungültige Anfrage: {detail}",
        "Requête invalide : {detail}",
    ),
    "what.card": ("card", "Karte", "carte"),
    "what.ticket": ("ticket", "Ticket", "billet"),
    "what.terms": ("terms", "AGB", "CGV"),
}


def ui(key: str, language: str = "en", **values: object) -> str:
    """The page or desk text `key` in `language`, its {placeholders} filled from `values`."""
    texts = UI[key]
    message = texts[LANGUAGES.index(language)]
    return message.format(**values) if values else message


def catalogue(language: str) -> dict[str, str]:
    """Every page text in `language` (the pages' script fills placeholders itself)."""
    index = LANGUAGES.index(language)
    return {key: texts[index] for key, texts in UI.items()}


_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_day(day: date, language: str = "en") -> str:
    """A day as people of `language` write it on a card: 31 Dec 2027, 31.12.2027, 31/12/2027."""
    if language == "de":
        return f"{day.day:02d}.{day.month:02d}.{day.year}"
    if language == "fr":
        return f"{day.day:02d}/{day.month:02d}/{day.year}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun in the right number, for command output ("1 lane", "2 lanes")."""
    noun = singular if count == 1 else plural or f"{singular}s"
    return f"{count:,} {noun}"
