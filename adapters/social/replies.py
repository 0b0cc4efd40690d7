"""Reply texts for social media, in plain Dutch: the reference, and the right channel when needed."""

from __future__ import annotations


def reply_text(
    *,
    reference: str,
    answer_text: str | None,
    phone: str | None,
    form_url: str | None,
    bsn: bool,
    public_space: bool,
    danger: bool,
) -> str:
    call = f"bel {phone}" if phone else "bel ons"
    form = f"het contactformulier op {form_url}" if form_url else "het contactformulier op onze website"
    report_form = (
        f"het meldingsformulier op {form_url}" if form_url else "het meldingsformulier op onze website"
    )
    parts = [f"Bedankt voor uw bericht. Uw referentienummer is {reference}."]
    if danger:
        parts.append(f"Is er direct gevaar? Wacht dan niet op ons antwoord, maar {call}.")
    if bsn:
        parts.append(
            "Let op: stuur via sociale media nooit uw burgerservicenummer (BSN) of andere persoonlijke "
            "gegevens. Wij hebben het nummer uit uw bericht gehaald. Gaat uw vraag over uw persoonlijke "
            f"situatie? Gebruik dan {form}, dat is beveiligd. Of {call}."
        )
    if public_space:
        parts.append(
            "Wij sturen uw bericht door naar de juiste afdeling. Wilt u een volgende keer iets melden over "
            f"de straat, het groen of afval? Gebruik dan {report_form} of {call}. Dan houden wij u beter "
            "op de hoogte."
        )
    if answer_text and not danger:
        parts.append(f"U krijgt uiterlijk {answer_text} antwoord.")
    return " ".join(parts)
