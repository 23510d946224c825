"""What a user runs, built from every layer below: evaluate a run or a fold ensemble (:mod:`.evaluate`),
predict on any video (:mod:`.predict`), the demo (:mod:`.demo`) and the speed benchmarks (:mod:`.bench`).
The CLI is a thin layer over these."""
