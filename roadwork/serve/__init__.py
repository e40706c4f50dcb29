"""The serving shells around the engine: one dynamic batcher, an HTTP API and the SN72 miner.

    batcher.py   asyncio dynamic batcher; the engine runs on one worker thread
    answers.py   the "never a bad answer" policy (finite value in [0, 1], fallbacks)
    metrics.py   Prometheus metrics shared by both front-ends
    cache.py     the HTTP server's answer cache by image hash (LRU, one computation per image in flight)
    remote.py    the miner's client for an engine in a `roadwork serve` process (`mine --engine-url`)
    capture.py   opt-in saving of uncertain inputs with a parquet index
    http.py      FastAPI app (`roadwork serve`)
    protocol.py  the subnet's ImageSynapse, field for field
    miner.py     bittensor axon with blacklist / priority / metagraph re-sync (`roadwork mine`)
    query.py     a validator's dendrite for talking to your own miner (`roadwork query --local`)
    doctor.py    checks a miner setup, one line and a fix per check (`roadwork doctor`)

The front-ends only convert inputs and outputs; nothing here changes a probability.
"""

# How to install what `roadwork mine` needs (named by its error and by `roadwork doctor`; README, .ci/run):
# bittensor goes in without its dependencies because its setuptools pin contradicts torch's (pyproject.toml).
MINER_INSTALL = 'pip install -e ".[miner]" && pip install --no-deps -r requirements-miner.txt'
