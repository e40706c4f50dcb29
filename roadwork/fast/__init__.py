"""The fast path: encoded bytes to probabilities at the hardware's speed.

One module per job, each imported only where it is used (a CPU miner never imports torch here):

| module | job |
|---|---|
| `preprocess` | the classifier's image processor as a plain spec: numpy/PIL on CPU, torch ops on a device |
| `gpu_decode` | batched nvjpeg decode + device preprocessing, CPU fallback per item |
| `execution` | model execution switches: bf16, channels-last, torch.compile with static batch buckets, CUDA graphs, FP8 |
| `onnx_export` | export a classifier folder to ONNX (fp32 and static INT8) with a freshness stamp |
| `onnx_tier` | the `onnx` tier: onnxruntime on CPU, no torch or transformers import on the hot path |
| `tome` | token merging (ToMe bipartite soft matching) for timm ViT-family models |
"""
