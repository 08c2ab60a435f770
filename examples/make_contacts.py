"""Generate the example contacts files: plausible, fictional, reproducible (seeded).

    python examples/make_contacts.py debate-night 10000 > examples/debate-night/contacts.csv
    python examples/make_contacts.py b2b 2000 > examples/b2b-cta-test/contacts.csv
    python examples/make_contacts.py donations 10000 > examples/debate-night/donations.csv

Emails use the reserved example.* domains; phone numbers use the fictional 555-01XX range, which
phonenumbers accepts as valid US numbers.
"""

from __future__ import annotations

import csv
import random
import sys

FIRST = [
    "Ada",
    "Alex",
    "Amara",
    "Ana",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dana",
    "David",
    "Deshawn",
    "Elena",
    "Eli",
    "Emma",
    "Farah",
    "Grace",
    "Hana",
    "Ivan",
    "Jamal",
    "Jin",
    "Jose",
    "Julia",
    "Kai",
    "Kenji",
    "Lara",
    "Leo",
    "Lucia",
    "Maya",
    "Mei",
    "Miguel",
    "Nadia",
    "Noah",
    "Olu",
    "Omar",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Tariq",
    "Theo",
    "Uma",
    "Vera",
    "Wei",
    "Yusuf",
    "Zoe",
    "Zoë",
    "José",
    "Chloé",
    "Renée",
]
LAST = [
    "Adams",
    "Brown",
    "Chen",
    "Davis",
    "Diaz",
    "Evans",
    "Garcia",
    "Gupta",
    "Hall",
    "Ito",
    "Johnson",
    "Kim",
    "Lee",
    "Lopez",
    "Martin",
    "Moore",
    "Nguyen",
    "Okafor",
    "Patel",
    "Reyes",
    "Rossi",
    "Singh",
    "Smith",
    "Tanaka",
    "Taylor",
    "Walker",
    "Wang",
    "White",
    "Williams",
    "Young",
]
# Area codes by time zone; each gives 100 fictional numbers (NPA 555-0100 .. 555-0199).
ZONES = {
    "America/New_York": [
        "201",
        "202",
        "203",
        "212",
        "215",
        "267",
        "301",
        "305",
        "321",
        "347",
        "404",
        "407",
        "412",
        "518",
        "585",
        "609",
        "617",
        "646",
        "704",
        "718",
        "732",
        "757",
        "770",
        "786",
        "813",
        "857",
        "860",
        "908",
        "917",
        "954",
    ],
    "America/Chicago": [
        "205",
        "214",
        "225",
        "312",
        "314",
        "316",
        "402",
        "405",
        "414",
        "469",
        "504",
        "512",
        "608",
        "612",
        "615",
        "630",
        "651",
        "713",
        "773",
        "815",
        "816",
        "832",
        "847",
        "901",
        "913",
        "918",
        "920",
        "936",
        "952",
        "972",
    ],
    "America/Denver": ["303", "307", "385", "406", "435", "505", "575", "719", "720", "801", "970"],
    "America/Phoenix": ["480", "520", "602", "623", "928"],
    "America/Los_Angeles": [
        "206",
        "213",
        "253",
        "310",
        "323",
        "360",
        "408",
        "415",
        "425",
        "503",
        "510",
        "530",
        "541",
        "559",
        "562",
        "619",
        "626",
        "650",
        "661",
        "702",
        "707",
        "714",
        "725",
        "760",
        "775",
        "805",
        "818",
        "831",
        "858",
        "909",
        "916",
        "925",
        "949",
        "971",
    ],
    "America/Anchorage": ["907"],
    "Pacific/Honolulu": ["808"],
}
ZONE_WEIGHTS = {
    "America/New_York": 47,
    "America/Chicago": 29,
    "America/Denver": 7,
    "America/Phoenix": 2,
    "America/Los_Angeles": 14,
    "America/Anchorage": 0.5,
    "Pacific/Honolulu": 0.5,
}
PERSONAS = ["cfo", "it-director", "ops-manager"]
COMPANIES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Soylent",
    "Cyberdyne",
]


def _phones(rng: random.Random) -> dict[str, list[str]]:
    pools = {}
    for zone, npas in ZONES.items():
        pool = [f"+1{npa}55501{n:02d}" for npa in npas for n in range(100)]
        rng.shuffle(pool)
        pools[zone] = pool
    return pools


def generate(kind: str, count: int, seed: int = 2026) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pools = _phones(rng)
    zones = list(ZONE_WEIGHTS)
    rows = []
    overflow = 0
    for i in range(1, count + 1):
        zone = rng.choices(zones, weights=[ZONE_WEIGHTS[z] for z in zones])[0]
        if not pools[zone]:
            zone = "America/New_York" if pools["America/New_York"] else "America/Los_Angeles"
        if not pools[zone]:  # past the 555-01XX range (large benchmark audiences): 555-2000 upwards
            overflow += 1
            npas = ZONES[zone]
            pools[zone].append(f"+1{npas[overflow % len(npas)]}555{2000 + overflow // len(npas):04d}")
        first, last = rng.choice(FIRST), rng.choice(LAST)
        domain = rng.choice(["example.org", "example.com", "example.net"])
        local = f"{first}.{last}".lower().replace("ë", "e").replace("é", "e")
        email = f"{local}{i}@{domain}" if rng.random() > 0.04 else ""
        phone = pools[zone].pop() if rng.random() > 0.15 else ""
        row = {
            "id": f"{'sup' if kind == 'debate-night' else 'lead'}-{i:06d}",
            "email": email,
            "phone": phone,
            "first_name": first,
            "last_name": last,
            "timezone": zone,
            "sms_consent": "yes" if phone and rng.random() > 0.1 else "no",
        }
        if kind == "b2b":
            row["persona"] = rng.choice(PERSONAS)
            row["company"] = rng.choice(COMPANIES)
        rows.append(row)
    return rows


def donations(count: int, rate: float = 0.015, seed: int = 2027) -> list[dict[str, str]]:
    """A donation platform's export for the debate-night audience: gifts made without any tracked link.

    Everyone (holdout included) gives at the same base rate: this is what the holdout is measured by.
    """
    rng = random.Random(seed)
    rows = []
    for contact in generate("debate-night", count):
        if contact["email"] and rng.random() < rate:
            minute = rng.randrange(180)
            rows.append(
                {
                    "id": f"gift-{contact['id']}",
                    "email": contact["email"],
                    "amount": f"{rng.choice([5, 10, 25, 50, 100])}.00",
                    "time": f"2026-11-22T{21 + minute // 60:02d}:{minute % 60:02d}:00Z",
                }
            )
    return rows


def main() -> None:
    kind, count = sys.argv[1], int(sys.argv[2])
    rows = donations(count) if kind == "donations" else generate(kind, count)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


if __name__ == "__main__":
    main()
