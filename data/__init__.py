"""Hyperspectral data: preprocessing (preprocess.py), single-scene files (scene.py: .mat, .npy, ENVI through
envi.py, GeoTIFF through geotiff.py, NetCDF4/HDF5 through netcdf.py; where they lie, georef.py), nodata
(nodata.py) and what files say of their bands (bands.py), the HAD100 layout (had100.py), training patches and
validation scenes (patches.py), the synthetic set (synthetic.py), the ABU scenes fetched and verified
(download.py: ``python -m data.download abu``).

``data/HAD100Dataset`` (if you place the benchmark there) and ``data/synthetic`` (generated on first
use) are data folders beside this package; both are git-ignored.
"""
