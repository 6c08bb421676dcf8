"""Build lib/refusal/default_data/general_mc.jsonl: the project's local multiple-choice task.

Easy general-knowledge and reasoning questions written for this project (no external source):
each item is {"question", "choices" (4), "answer" (index), "category"}. Categories are interleaved
round-robin. Distractors for the
table-driven categories are other answers of the same table, drawn with a fixed seed.
Run: python scripts/build_general_mc.py (deterministic; checks the result).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "lib" / "refusal" / "default_data" / "general_mc.jsonl"
SEED = 20240917

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra",
    "Portugal": "Lisbon", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm", "Ireland": "Dublin",
    "Austria": "Vienna", "Poland": "Warsaw", "Kenya": "Nairobi", "Argentina": "Buenos Aires", "Peru": "Lima",
    "Thailand": "Bangkok", "South Korea": "Seoul", "India": "New Delhi", "Mexico": "Mexico City",
    "the United Kingdom": "London", "Finland": "Helsinki", "Denmark": "Copenhagen", "Hungary": "Budapest",
    "Cuba": "Havana", "Turkey": "Ankara",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "open": "closed",
    "light": "dark", "early": "late", "full": "empty", "wet": "dry", "young": "old", "loud": "quiet",
    "strong": "weak", "rich": "poor", "hard": "soft", "thick": "thin", "high": "low", "win": "lose",
    "push": "pull", "day": "night", "begin": "end", "buy": "sell", "inside": "outside", "true": "false",
    "first": "last",
}
ANIMAL_SOUNDS = {
    "dog": "bark", "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "lion": "roar",
    "horse": "neigh", "owl": "hoot", "snake": "hiss", "pig": "oink", "frog": "croak", "bee": "buzz",
}
ANIMAL_CLASS = {
    "dolphin": "mammal", "eagle": "bird", "salmon": "fish", "frog": "amphibian", "crocodile": "reptile",
    "whale": "mammal", "penguin": "bird", "shark": "fish", "lizard": "reptile", "bat": "mammal",
    "sparrow": "bird", "tuna": "fish", "turtle": "reptile", "salamander": "amphibian",
}
CLASSES = ["mammal", "bird", "fish", "reptile", "amphibian", "insect"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
PLURALS = {
    "child": "children", "mouse": "mice", "foot": "feet", "tooth": "teeth", "man": "men", "woman": "women",
    "goose": "geese", "person": "people", "knife": "knives", "leaf": "leaves", "box": "boxes", "city": "cities",
}
# Hand-written: (question, correct, [three wrong])
HAND = [
    ("What color is a clear daytime sky?", "blue", ["green", "purple", "black"]),
    ("What do plants need from the sun to make food?", "light", ["sound", "salt", "snow"]),
    ("Water freezes at what temperature in Celsius?", "0 degrees", ["50 degrees", "100 degrees", "-40 degrees"]),
    ("Water boils at sea level at what temperature in Celsius?", "100 degrees", ["0 degrees", "10 degrees", "300 degrees"]),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("How many legs does an insect have?", "six", ["eight", "four", "two"]),
    ("Which planet do we live on?", "Earth", ["Mars", "Jupiter", "Venus"]),
    ("What is the largest planet in our solar system?", "Jupiter", ["Mercury", "Earth", "Mars"]),
    ("Which star is closest to the Earth?", "the Sun", ["Sirius", "Polaris", "Vega"]),
    ("What gas do humans need to breathe to stay alive?", "oxygen", ["helium", "neon", "argon"]),
    ("What is frozen water called?", "ice", ["steam", "sand", "glass"]),
    ("Which organ pumps blood through the body?", "the heart", ["the lungs", "the stomach", "the skin"]),
    ("Which organ do humans use to breathe?", "the lungs", ["the liver", "the heart", "the kidneys"]),
    ("How many days are in a week?", "seven", ["five", "ten", "twelve"]),
    ("How many months are in a year?", "twelve", ["ten", "seven", "fifty-two"]),
    ("How many hours are in a day?", "24", ["12", "60", "100"]),
    ("How many minutes are in an hour?", "60", ["100", "24", "30"]),
    ("What do bees make?", "honey", ["milk", "silk", "wool"]),
    ("What do cows give that people drink?", "milk", ["honey", "oil", "juice"]),
    ("Which season comes after winter?", "spring", ["autumn", "summer", "winter"]),
    ("Which season is usually the hottest?", "summer", ["winter", "autumn", "spring"]),
    ("What falls from clouds when it rains?", "water", ["sand", "leaves", "smoke"]),
    ("What shape has three sides?", "a triangle", ["a square", "a circle", "a hexagon"]),
    ("What shape has four equal sides and four right angles?", "a square", ["a triangle", "a circle", "an oval"]),
    ("How many sides does a hexagon have?", "six", ["five", "eight", "four"]),
    ("What do you use to write on paper?", "a pen", ["a spoon", "a pillow", "a shoe"]),
    ("What do people use to see?", "eyes", ["ears", "elbows", "knees"]),
    ("What do people use to hear?", "ears", ["eyes", "toes", "hair"]),
    ("Where do fish live?", "in water", ["in trees", "in the desert sand", "in clouds"]),
    ("What is the opposite direction of north?", "south", ["east", "west", "up"]),
    ("In which direction does the sun rise?", "east", ["west", "north", "south"]),
    ("What color are ripe bananas?", "yellow", ["blue", "purple", "black"]),
    ("What color is fresh grass?", "green", ["red", "blue", "orange"]),
    ("Which fruit is famous for keeping the doctor away, according to a saying?", "an apple", ["a lemon", "a coconut", "a grape"]),
    ("What do caterpillars turn into?", "butterflies", ["spiders", "fish", "birds"]),
    ("What is the main language spoken in Brazil?", "Portuguese", ["Spanish", "French", "German"]),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare", ["Charles Darwin", "Isaac Newton", "Albert Einstein"]),
    ("What instrument has black and white keys?", "a piano", ["a drum", "a trumpet", "a violin"]),
    ("What do you call a baby dog?", "a puppy", ["a kitten", "a calf", "a foal"]),
    ("What do you call a baby cat?", "a kitten", ["a puppy", "a lamb", "a chick"]),
    ("Which is the largest ocean on Earth?", "the Pacific Ocean", ["the Arctic Ocean", "the Indian Ocean", "the Southern Ocean"]),
    ("What is the tallest animal?", "the giraffe", ["the mouse", "the rabbit", "the penguin"]),
    ("Which metal is attracted to a magnet?", "iron", ["gold", "wood", "plastic"]),
    ("What do we call the white solid that falls from the sky in winter?", "snow", ["sand", "rain", "ash"]),
    ("What is the color of coal?", "black", ["white", "pink", "yellow"]),
    ("If you are thirsty, what should you drink?", "water", ["sand", "paint", "glue"]),
    ("What do you need to unlock a door?", "a key", ["a spoon", "a feather", "a banana"]),
    ("Where does a bird usually lay its eggs?", "in a nest", ["in a shoe", "in a river", "in a book"]),
    ("What is used to cut paper?", "scissors", ["a pillow", "a cup", "a sock"]),
    ("Which meal is eaten in the morning?", "breakfast", ["dinner", "supper", "midnight snack"]),
]


def _mc(question: str, correct: str, wrong: list[str], category: str, rng: random.Random) -> dict:
    choices = [correct, *wrong]
    assert len(set(choices)) == 4, (question, choices)
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(correct), "category": category}


def _from_table(table: dict[str, str], template: str, category: str, rng: random.Random, pool: list[str] | None = None) -> list[dict]:
    items = []
    values = sorted(set(pool or table.values()))
    for key, ans in table.items():
        wrong = rng.sample([v for v in values if v != ans], 3)
        items.append(_mc(template.format(key), ans, wrong, category, rng))
    return items


def build() -> list[dict]:
    rng = random.Random(SEED)
    items: list[dict] = []
    items += _from_table(CAPITALS, "What is the capital city of {}?", "capitals", rng)
    items += _from_table(OPPOSITES, "What is the opposite of \"{}\"?", "opposites", rng)
    items += _from_table(ANIMAL_SOUNDS, "What sound does a {} make?", "animal_sounds", rng)
    items += _from_table(ANIMAL_CLASS, "What kind of animal is a {}?", "animal_classes", rng, pool=CLASSES)
    items += _from_table(PLURALS, "What is the plural of \"{}\"?", "plurals", rng,
                         pool=list(PLURALS.values()) + ["childs", "mouses", "foots", "tooths", "mans", "gooses"])
    for i, d in enumerate(DAYS):
        items.append(_mc(f"Which day comes after {d}?", DAYS[(i + 1) % 7],
                         rng.sample([x for x in DAYS if x != DAYS[(i + 1) % 7]], 3), "sequences", rng))
    for i, m in enumerate(MONTHS):
        items.append(_mc(f"Which month comes after {m}?", MONTHS[(i + 1) % 12],
                         rng.sample([x for x in MONTHS if x != MONTHS[(i + 1) % 12]], 3), "sequences", rng))
    sums: set[tuple[int, int]] = set()
    while len(sums) < 25:
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        if (a, b) in sums:
            continue
        sums.add((a, b))
        ans = a + b
        wrong = rng.sample([x for x in range(max(0, ans - 6), ans + 7) if x != ans], 3)
        items.append(_mc(f"What is {a} plus {b}?", str(ans), [str(w) for w in wrong], "arithmetic", rng))
    for q, c, w in HAND:
        items.append(_mc(q, c, w, "general", rng))
    # interleave categories round-robin, so that lm-eval's `limit` (first N items) is a mixed sample
    by_cat: dict[str, list[dict]] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    queues = list(by_cat.values())
    mixed = []
    while any(queues):
        for q in queues:
            if q:
                mixed.append(q.pop(0))
    return mixed


def check(items: list[dict]) -> None:
    assert len(items) >= 150, len(items)
    qs = [it["question"] for it in items]
    assert len(set(qs)) == len(qs), "duplicate question"
    for it in items:
        assert len(it["choices"]) == 4 and 0 <= it["answer"] < 4 and len(set(it["choices"])) == 4, it


if __name__ == "__main__":
    items = build()
    check(items)
    OUT.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
    print(f"wrote {len(items)} items to {OUT}")
