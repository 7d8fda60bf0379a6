"""Words for synthetic catalog text: categories, their nouns and tags, brands.

Titles and descriptions are built from these so that content models have real
signal: items of one category share nouns and tags, and search queries use the
same words.
"""

from __future__ import annotations

CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # category: (nouns, tags)
    "electronics": (("Headphones", "Speaker", "Charger", "Smartwatch", "Tablet", "Camera"),
                    ("wireless", "bluetooth", "portable", "hd", "smart", "battery")),
    "books": (("Novel", "Cookbook", "Biography", "Atlas", "Anthology", "Guide"),
              ("fiction", "bestseller", "paperback", "hardcover", "classic", "travel")),
    "home": (("Lamp", "Rug", "Cushion", "Vase", "Mirror", "Blanket"),
             ("cozy", "decor", "minimalist", "cotton", "handmade", "living-room")),
    "kitchen": (("Kettle", "Skillet", "Knife Set", "Blender", "Teapot", "Cutting Board"),
                ("stainless", "nonstick", "cast-iron", "baking", "coffee", "dishwasher-safe")),
    "sports": (("Yoga Mat", "Dumbbell", "Running Shoe", "Jersey", "Racket", "Water Bottle"),
               ("fitness", "running", "training", "outdoor", "lightweight", "breathable")),
    "outdoors": (("Tent", "Backpack", "Headlamp", "Sleeping Bag", "Hammock", "Compass"),
                 ("camping", "hiking", "waterproof", "trail", "ultralight", "survival")),
    "beauty": (("Serum", "Lipstick", "Moisturizer", "Palette", "Shampoo", "Perfume"),
               ("skincare", "vegan", "organic", "fragrance", "hydrating", "matte")),
    "fashion": (("Jacket", "Sneaker", "Scarf", "Handbag", "Dress", "Sunglasses"),
                ("denim", "leather", "summer", "winter", "casual", "vintage")),
    "toys": (("Puzzle", "Building Set", "Plush", "Board Game", "Doll", "Robot Kit"),
             ("kids", "educational", "family", "creative", "stem", "collectible")),
    "games": (("Console", "Controller", "Strategy Game", "Racing Game", "Headset", "RPG"),
              ("gaming", "multiplayer", "co-op", "retro", "esports", "open-world")),
    "music": (("Guitar", "Keyboard", "Vinyl Record", "Ukulele", "Microphone", "Drum Pad"),
              ("acoustic", "jazz", "rock", "studio", "beginner", "analog")),
    "garden": (("Planter", "Hose", "Pruner", "Seed Kit", "Bird Feeder", "Trowel"),
               ("plants", "organic", "patio", "flowers", "herbs", "watering")),
    "pets": (("Dog Bed", "Cat Tree", "Leash", "Aquarium", "Chew Toy", "Pet Food"),
             ("dog", "cat", "grooming", "treats", "puppy", "durable")),
    "office": (("Notebook", "Desk Lamp", "Fountain Pen", "Planner", "Monitor Stand", "Chair"),
               ("productivity", "ergonomic", "stationery", "desk", "work-from-home", "paper")),
    "grocery": (("Coffee Beans", "Olive Oil", "Tea Sampler", "Granola", "Spice Rub", "Honey"),
                ("organic", "gourmet", "fair-trade", "gluten-free", "snack", "breakfast")),
    "health": (("Vitamin Pack", "Massage Gun", "Thermometer", "Scale", "Protein Powder",
                "First Aid Kit"),
               ("wellness", "supplement", "recovery", "sleep", "nutrition", "immune")),
    "baby": (("Stroller", "Onesie", "Teether", "Baby Monitor", "Bottle Set", "Play Mat"),
             ("newborn", "infant", "soft", "bpa-free", "nursery", "toddler")),
    "jewelry": (("Necklace", "Ring", "Bracelet", "Earrings", "Watch", "Pendant"),
                ("silver", "gold", "gemstone", "gift", "elegant", "handcrafted")),
    "automotive": (("Dash Cam", "Car Vacuum", "Seat Cover", "Tire Inflator", "Phone Mount",
                    "Wax Kit"),
                   ("car", "detailing", "road-trip", "garage", "tools", "safety")),
    "movies": (("Blu-ray", "Box Set", "Documentary", "Thriller", "Comedy Special",
                "Animated Film"),
               ("drama", "action", "family", "sci-fi", "award-winning", "collector")),
}

# Typical price per category (median, currency units); spread is log-normal.
CATEGORY_PRICE: dict[str, float] = {
    "electronics": 120, "books": 15, "home": 45, "kitchen": 40, "sports": 35,
    "outdoors": 70, "beauty": 25, "fashion": 55, "toys": 30, "games": 50, "music": 90,
    "garden": 25, "pets": 28, "office": 22, "grocery": 12, "health": 30, "baby": 40,
    "jewelry": 80, "automotive": 35, "movies": 18,
}

ADJECTIVES = ("Classic", "Compact", "Deluxe", "Essential", "Premium", "Everyday", "Pro",
              "Eco", "Vintage", "Ultra", "Smart", "Urban", "Nordic", "Sunny", "Rugged",
              "Silky", "Bold", "Gentle", "Swift", "Cosmic")

BRANDS = ("Acme", "Nordlys", "Kestrel", "Bramble", "Lumen", "Orbit", "Tandem", "Juniper",
          "Halcyon", "Marlow", "Quill", "Sparrow", "Vesta", "Willow", "Zephyr", "Atlas",
          "Cobalt", "Ember", "Fable", "Grove")

PHRASES = ("Built to last and easy to love.", "A customer favourite for everyday use.",
           "Designed with care and tested by our team.", "Great value for the quality.",
           "Makes a thoughtful gift.", "Light, practical and good-looking.",
           "Our most requested model this season.", "Simple to set up, hard to put down.")

SEGMENTS: dict[str, dict[str, float]] = {
    # share of users, sessions per active day, price sensitivity, search propensity
    "heavy": {"share": 0.10, "sessions_per_day": 0.9, "price_sensitivity": 0.3, "search": 0.25},
    "regular": {"share": 0.30, "sessions_per_day": 0.3, "price_sensitivity": 0.6,
                "search": 0.2},
    "casual": {"share": 0.45, "sessions_per_day": 0.08, "price_sensitivity": 0.6,
               "search": 0.15},
    "bargain_hunter": {"share": 0.15, "sessions_per_day": 0.25, "price_sensitivity": 1.6,
                       "search": 0.35},
}

DEVICES = ("mobile", "desktop", "tablet")
