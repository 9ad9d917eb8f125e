"""Golden samples written by the real Nix 2.8.0, shared by the format tests."""

# Made by `nix-store --generate-binary-cache-key test1 sk pk`; written by
# `nix copy --to file://...?secret-key=sk` (so its Sig is by that key).
NIX_WRITTEN_NARINFO = """\
StorePath: /nix/store/54dfqaxwz23zvax91bpff2q48w2d2w6s-b
URL: nar/1py0ql2r3fvf5h8h9xh2fdsxkizwb8p4wgfa848nlfiv612sv3vr.nar.xz
Compression: xz
FileHash: sha256:1py0ql2r3fvf5h8h9xh2fdsxkizwb8p4wgfa848nlfiv612sv3vr
FileSize: 168
NarHash: sha256:1p2169hbi1x462yd1i8wjipy0kdc1lmp14qdqg0p2lmfp88hcwqh
NarSize: 160
References: ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a
Deriver: zv5r7h905kpqkma1x4xvwvxjamg6sdgq-b.drv
Sig: test1:/8AULi8QZDhb12Bh2uTPgROdR5TubIdK5UhQLcNnqGlhxflG1nwSb6IKWJKVLAYzfAnalO8LYHhknydy/XwTBg==
"""
