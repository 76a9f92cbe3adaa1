# Sourced by the FP8 device scripts, after they set $B (the carried binaries) and $W (the work folder):
# the random full-size inputs they share, each made once per machine (a later call reuses them).
# Output of make-random-flux goes to $W/make.log.

# random_transformer DIR: a random FLUX.1-dev-shaped bf16 transformer (diffusers layout, 23.8 GB).
random_transformer() {
  [ -d "$1" ] || "$B/make-random-flux" --out "$1" --layout diffusers --dtype bf16 >> "$W/make.log" 2>&1
}

# random_adapters DIR: rank-64 adapters on every attention projection, DIR/a64.safetensors (seed 2)
# and DIR/b64.safetensors (seed 3).
random_adapters() {
  local s f
  for s in 2:a64 3:b64; do
    f=$1/${s#*:}.safetensors
    [ -f "$f" ] || "$B/make-random-flux" --out "$f" --lora attn --rank 64 --seed "${s%%:*}" >> "$W/make.log" 2>&1 || return 1
  done
}
