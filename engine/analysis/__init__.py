"""Torch-free reads of the catalog and the run folders: what the app shows and the command line prints.

regions      the region rules (one `RegionRule` per map, read as SQL and as Python), the map axes, `Bounds`
datamap      the map grid (binned counts, row 0 at the top) and its text rendering; counts per region
pages        the examples table: `ExampleFilter`, one page by SQL, row counts
examples     one example: record, metrics, per-epoch trajectory, annotations, QA prediction spans
cases        case studies per region and their Markdown export
evaluations  evaluations of every run, flattened for comparing runs
metrics      per-example metrics with their regions (`dynascope metrics`), the per-region summary
runs         runs as listed (origin, trained on), the app's overview with a key metric, one run's row
datasets     datasets as the app lists them
selection    top-p% / random / map-region selections into new datasets
progress     a job's progress from its events (one follower for the CLI and the app), the workspace fingerprint
format       the one plain-text formatter of values and durations

Imports neither torch nor textual: the app and the command line read through it."""
