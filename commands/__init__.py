"""Command lines, benchmarks and demos: everything a person runs, kept apart from the libraries they drive.

`neural/`, `training/` and `addon/` are libraries: importing any of their modules does nothing but define things,
and none of them imports this package. The packages' own entry points (`python -m neural`, `python -m addon`) are
thin dispatchers onto the modules here; the extension zip (commands/build.py) carries none of this.

    python -m neural demo | render | retarget | import-official | body   (neural/__main__.py)
    python -m addon build | render | demo                                (commands/blender.py)
    python -m commands.bench          generator speed, FLOP efficiency, memory (docs/bench/)
    python -m commands.bench_raster   the rasteriser's time on the free body
    python -m commands.addon_bench    the render engine's cost per frame beyond the generator
"""
