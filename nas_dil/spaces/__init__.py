"""Search spaces: TOML data (search_spaces/*.toml) turned into candidates.

``load_space("hdc")`` or ``load_space("my_space.toml")`` gives a `Space`: sample it with an
Optuna trial (always valid, no rejection loop), count or enumerate its candidates exactly, and
test membership. Importing this package never imports torch.
"""

from nas_dil.spaces.candidate import OUTPUT_STRIDES, Candidate
from nas_dil.spaces.config import (
    MAX_DEPTH,
    MAX_RATE,
    RULES,
    IntRange,
    SpaceConfig,
    parse_config,
)
from nas_dil.spaces.crop import (
    CROP_FIELDS,
    batch_candidate_crop,
    candidate_crop_fields,
    dead_fraction,
    dead_tap_reason,
    live_rate_cap,
    stem_map,
)
from nas_dil.spaces.errors import SpaceError
from nas_dil.spaces.rules import (
    count_hole_free,
    hole_free_multisets,
    is_hole_free,
    repair_gapfree,
)
from nas_dil.spaces.space import Space, load_space, sample_candidates, space_from_dict

__all__ = [
    "CROP_FIELDS",
    "MAX_DEPTH",
    "MAX_RATE",
    "OUTPUT_STRIDES",
    "RULES",
    "Candidate",
    "IntRange",
    "Space",
    "SpaceConfig",
    "SpaceError",
    "batch_candidate_crop",
    "candidate_crop_fields",
    "count_hole_free",
    "dead_fraction",
    "dead_tap_reason",
    "hole_free_multisets",
    "is_hole_free",
    "live_rate_cap",
    "load_space",
    "parse_config",
    "repair_gapfree",
    "sample_candidates",
    "space_from_dict",
    "stem_map",
]
