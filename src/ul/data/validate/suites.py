"""The expectations (GX 1.x classes) of each table: what valid fetched and decoded data are."""

from __future__ import annotations

from ul.data.manifest import SPLITS


def suites(n_classes: int, resolution: int, channels: int, resize_mode: str = "pad") -> dict[str, list]:
    """The expectations of each table (GX 1.x classes), keyed by table name.

    Source sizes: with resize_mode=pad an image larger than the resolution would be silently
    cropped, so width and height must be <= resolution; with resize it must not be up-sampled by
    more than 2x (min side >= resolution/2)."""
    import great_expectations.expectations as gxe

    if resize_mode == "pad":
        size = [
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=resolution) for c in ("width", "height")
        ]
    else:
        size = [
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=max(1, resolution // 2)) for c in ("width", "height")
        ]

    labels = (
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(n_classes)))
        if n_classes
        else gxe.ExpectColumnValuesToBeNull(column="label")
    )
    return {
        "manifest": [
            gxe.ExpectTableRowCountToBeBetween(min_value=2),
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("path", "split", "sha256", "bytes")],
            gxe.ExpectColumnValuesToBeUnique(column="path"),
            gxe.ExpectColumnValuesToBeUnique(column="sha256"),
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="sha256", column_B="file_sha256"),
            gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
            *size,
            labels,
        ],
        "counts": [
            gxe.ExpectColumnValuesToBeBetween(column="manifest", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="decoded", min_value=1),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="decoded", column_B="expected_decoded"),
        ],
        "images": [gxe.ExpectTableRowCountToBeBetween(min_value=1), *pixel_expectations(resolution, channels)],
    }


def pixel_expectations(resolution: int, channels: int, frames: int | None = None) -> list:
    """The layout and pixel statistics of a decoded image's (or clip's, with `frames`) row: the
    configured shape in uint8, and not blank (std 0, or a mean outside [1, 254])."""
    import great_expectations.expectations as gxe

    in_set = gxe.ExpectColumnValuesToBeInSet
    time = [in_set(column="frames", value_set=[frames])] if frames is not None else []
    return [
        in_set(column="channels", value_set=[channels]),
        *time,
        in_set(column="height", value_set=[resolution]),
        in_set(column="width", value_set=[resolution]),
        in_set(column="dtype", value_set=["uint8"]),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=0, max_value=255),
        gxe.ExpectColumnValuesToBeBetween(column="max", min_value=0, max_value=255),
        gxe.ExpectColumnValuesToBeBetween(column="std", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="mean", min_value=1, max_value=254),
    ]
