"""What test.py says of a scene beside its scores, where the file tells it: the nodata pixels left out
(data/nodata.py) and the wavelength range of the bands used (data/bands.py); printed once per scene and kept
in the --json file."""
from __future__ import annotations

from data.bands import wavelength_range
from data.nodata import NodataScan
from data.scene import Scene


def scene_facts(scene: Scene, scan: NodataScan | None, bands: int, start: int) -> dict[str, object]:
    """JSON fields: ``nodata_pixels`` and ``partial_nodata_pixels`` where the scene has nodata (``scan``: what
    the source's check found), and ``wavelength_range_nm`` ``[first, last]`` of the bands used where the file
    gives wavelengths."""
    out: dict[str, object] = {}
    if scan is not None and scan.count:
        out["nodata_pixels"] = scan.count
        out["partial_nodata_pixels"] = scan.partial
    span = wavelength_range(scene.wavelengths, bands, start)
    if span is not None:
        out["wavelength_range_nm"] = [round(span[0], 3), round(span[1], 3)]
    return out


def scene_facts_lines(scene: Scene, scan: NodataScan | None, bands: int, start: int) -> list[str]:
    """The lines test.py prints for :func:`scene_facts` (none for a scene the file says nothing more of)."""
    facts = scene_facts(scene, scan, bands, start)
    lines = []
    if "wavelength_range_nm" in facts:
        lo, hi = facts["wavelength_range_nm"]
        lines.append(f"{scene.label}: bands [{start}, {start + bands}) = {lo:g}-{hi:g} nm")
    if "nodata_pixels" in facts:
        h, w = scene.cube.shape[:2]
        lines.append(f"{scene.label}: {facts['nodata_pixels']} of {h * w} pixels are nodata in the bands used and "
                     f"left out ({facts['partial_nodata_pixels']} of them with no data in only some bands)")
    return lines
