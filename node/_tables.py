"""Static tables for synthetic records, and the helpers that read them.

Private data of :mod:`ncbsim.node.datagen`: weights of document statuses, types and vehicle
colours; document-number and number-plate formats per bureau; offences and circumstances
for person notices; vehicle makes with their world manufacturer identifiers and models.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ADULT_CIRCUMSTANCES",
    "CHILD_CIRCUMSTANCES",
    "COLOUR_WEIGHTS",
    "DEFAULT_DOCUMENT_NUMBER",
    "DEFAULT_PLATE",
    "DOCUMENT_NUMBERS",
    "DOC_TYPE_WEIGHTS",
    "MAKES",
    "OFFENCES",
    "PLATES",
    "STATUS_WEIGHTS",
    "number_pattern",
    "plate_pattern",
]


def _pattern(spec: str) -> list[Sequence[str]]:
    """Per-position alphabets for a pattern: D digit, L letter, C consonant, A alphanumeric."""
    alphabets = {
        "D": "0123456789",
        "L": "ABCDEFGHJKLMNPRSTUVWXYZ",
        "C": "BCDFGHJKLMNPRSTVWXYZ",
        "A": "0123456789ABCDEFGHJKLMNPRSTUVWXYZ",
    }
    return [alphabets.get(ch, ch) for ch in spec]


# ---------------------------------------------------------------- documents

STATUS_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("stolen", 0.45), ("lost", 0.39), ("revoked", 0.06), ("invalid", 0.04), ("stolen_blank", 0.06)
)  # fmt: skip
DOC_TYPE_WEIGHTS: tuple[tuple[str, float], ...] = (("P", 0.96), ("PD", 0.02), ("PS", 0.02))
DOCUMENT_NUMBERS = {
    "FR": "DDLLDDDDD",
    "DE": "[CFGHJK]AAAAAAAA",
    "GB": "DDDDDDDDD",
    "US": "LDDDDDDDD",
    "IT": "LLDDDDDDD",
    "ES": "LLLDDDDDD",
    "NL": "LLAAAAAAD",
    "CH": "LDDDDDDDD",
}
DEFAULT_DOCUMENT_NUMBER = "LLDDDDDDD"


def number_pattern(bureau: str) -> list[Sequence[str]]:
    """Per-position alphabets of the document numbers of ``bureau`` (alpha-2)."""
    spec = DOCUMENT_NUMBERS.get(bureau, DEFAULT_DOCUMENT_NUMBER)
    if spec.startswith("["):
        head, _, rest = spec[1:].partition("]")
        return [head, *_pattern(rest)]
    return _pattern(spec)


# ---------------------------------------------------------------- persons

OFFENCES = (
    "armed robbery", "murder", "attempted murder", "drug trafficking (cocaine)",
    "drug trafficking (heroin)", "trafficking in human beings", "migrant smuggling",
    "money laundering", "investment fraud", "online fraud", "ransomware extortion",
    "firearms trafficking", "kidnapping", "rape", "sexual exploitation of children",
    "terrorist financing", "membership of a criminal organisation", "aggravated burglary",
    "vehicle theft ring", "counterfeiting currency", "trafficking in cultural property",
    "environmental crime (illegal wildlife trade)", "corruption of a public official",
    "escape from lawful custody", "forgery of travel documents",
)  # fmt: skip
CHILD_CIRCUMSTANCES = (
    "did not return home from school", "believed to have been taken abroad by a parent",
    "last seen in a playground near home", "left a children's home without notice",
    "possible victim of child trafficking", "last seen at a bus station",
)  # fmt: skip
ADULT_CIRCUMSTANCES = (
    "left home on foot and has not been seen since", "failed to return from a trip abroad",
    "left a care home without notice", "last seen at a bus station",
    "phone switched off since the day of disappearance", "disappeared after a night out",
    "possible victim of human trafficking", "last seen at a border crossing",
    "missing after leaving work", "suffers from a medical condition requiring treatment",
    "last contact by text message", "left behind passport and bank cards",
)  # fmt: skip


# ---------------------------------------------------------------- vehicles

# (make, WMIs, models, weight)
MAKES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float], ...] = (
    ("Volkswagen", ("WVW", "WVG"), ("Golf", "Polo", "Passat", "Tiguan", "T-Roc"), 9),
    ("Toyota", ("JTD", "JTE", "JTN", "SB1"), ("Corolla", "Yaris", "RAV4", "Land Cruiser"), 10),
    ("BMW", ("WBA", "WBS"), ("3 Series", "5 Series", "X5", "X3"), 5),
    ("Mercedes-Benz", ("WDD", "WDB", "W1K"), ("C-Class", "E-Class", "GLE", "Sprinter"), 5),
    ("Audi", ("WAU",), ("A4", "A6", "Q5", "Q7"), 4),
    ("Renault", ("VF1",), ("Clio", "Megane", "Captur", "Master"), 5),
    ("Peugeot", ("VF3",), ("208", "308", "3008", "Partner"), 5),
    ("Citroën", ("VF7",), ("C3", "C4", "Berlingo"), 3),
    ("Fiat", ("ZFA",), ("Panda", "500", "Tipo", "Ducato"), 3),
    ("Ford", ("WF0", "1FA", "1FT"), ("Focus", "Fiesta", "Transit", "F-150", "Mustang"), 7),
    ("Chevrolet", ("1G1", "1GC"), ("Malibu", "Silverado", "Tahoe"), 3),
    ("Honda", ("JHM", "SHH"), ("Civic", "CR-V", "Accord"), 4),
    ("Nissan", ("JN1", "SJN"), ("Qashqai", "X-Trail", "Navara", "Patrol"), 4),
    ("Hyundai", ("KMH", "TMA"), ("Tucson", "i30", "Santa Fe", "Elantra"), 4),
    ("Kia", ("KNA", "U5Y"), ("Sportage", "Ceed", "Sorento", "Rio"), 3),
    ("Škoda", ("TMB",), ("Octavia", "Fabia", "Superb", "Kodiaq"), 3),
    ("Land Rover", ("SAL",), ("Range Rover", "Discovery", "Defender"), 2),
    ("Lexus", ("JTH",), ("RX", "NX", "LX"), 1),
    ("Porsche", ("WP0", "WP1"), ("911", "Cayenne", "Macan"), 1),
    ("Tesla", ("5YJ", "LRW"), ("Model 3", "Model Y"), 1),
    ("Mitsubishi", ("JMB", "MMB"), ("L200", "Outlander", "Pajero"), 2),
    ("Dacia", ("UU1",), ("Sandero", "Duster", "Logan"), 2),
    ("Volvo", ("YV1",), ("XC60", "XC90", "V60"), 2),
)  # fmt: skip
COLOUR_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("white", 25), ("black", 20), ("grey", 18), ("silver", 12), ("blue", 9), ("red", 7),
    ("green", 3), ("brown", 2), ("beige", 2), ("yellow", 1), ("orange", 1),
)  # fmt: skip

PLATES: dict[str, str] = {
    "FR": "LL-DDD-LL", "DE": "{B,M,HH,K,F,S,D,DO,E,L,H,N,DU,BO,KA,MA,WI} LL DDDD",
    "GB": "LLDD LLL", "IT": "LLDDDLL", "ES": "DDDD CCC", "NL": "LL-DDD-L", "BE": "D-LLL-DDD",
    "PL": "{WA,WB,KR,PO,GD,WR,LU,SZ} DDDDL", "PT": "LL-DD-LL", "AT": "{W,G,L,S,I,K} DDDDL",
    "CH": "{ZH,BE,GE,VD,TI,AG,SG,LU,BS,VS} DDDDDD", "US": "DLLLDDD", "CA": "LLLL DDD",
    "BR": "LLLDLDD", "AR": "LL DDD LL", "MX": "LLL-DDD-L", "RU": "{A,B,E,K,M,H,O,P,C,T,Y,X}"
    "DDD{A,B,E,K,M,H,O,P,C,T,Y,X}{A,B,E,K,M,H,O,P,C,T,Y,X} {77,99,177,197,50,78}",
    "UA": "{AA,KA,AX,BI,AI,BC} DDDD LL", "TR": "{01,06,07,16,34,35} LL DDD", "NG": "LLL DDD LL",
    "IN": "{MH,DL,KA,TN,UP,GJ} DD LL DDDD", "ZA": "LL DD LL GP", "AU": "DLLL DDD",
    "SE": "LLL DDL", "NO": "LL DDDDD", "DK": "LL DD DDD", "FI": "LLL-DDD", "IE": "DDD-D-DDDD",
    "GR": "LLL-DDDD", "RO": "{B,CJ,TM,IS,CT} DD LLL", "CZ": "DLD DDDD", "HU": "LLL-DDD",
}  # fmt: skip
DEFAULT_PLATE = "LLL DDD"


def plate_pattern(bureau: str) -> list[Sequence[str]]:
    """Per-position alphabets of the number plates of ``bureau`` (alpha-2)."""
    spec = PLATES.get(bureau, DEFAULT_PLATE)
    pattern: list[Sequence[str]] = []
    rest = spec
    while rest:
        if rest[0] == "{":
            options, _, rest = rest[1:].partition("}")
            pattern.append(options.split(","))
        else:
            pattern.extend(_pattern(rest[0]))
            rest = rest[1:]
    return pattern
