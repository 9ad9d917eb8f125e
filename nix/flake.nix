# nix/flake.nix: nixshard as a flake.
#
# The flake lives in nix/, the Python source tree is the repository root
# (`./..`). Use it through git so that the whole repository is the flake's
# source and `./..` resolves inside it:
#
#   nix build 'git+file:.?dir=nix'        # or `nix build ./nix` inside the checkout
#   nix run   'git+file:.?dir=nix' -- serve --config gateway.toml
#
# (A bare `path:./nix` copies only nix/ into the store; `./..` would then
# point outside the flake and pure evaluation refuses it.)
#
# Outputs, for x86_64-linux and aarch64-linux:
#   packages.<system>.default / .nixshard   the application (./package.nix)
#   apps.<system>.default                   `nixshard`
#   overlays.default                        adds pkgs.nixshard
#   nixosModules.default                    services.nixshard.{gateway,node,push,
#                                           postBuildHook,maintenance,substituter}
#                                           (./module.nix)
#
# Only `nixpkgs.lib.genAttrs` and `nixpkgs.legacyPackages` are used, so
# tests/test_nix_files.py can evaluate the outputs against a stand-in nixpkgs.
{
  description = "nixshard: a Nix binary cache whose bytes live as k-of-n erasure-coded shards on untrusted storage nodes";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      # The source tree: the repository root, one level above this flake.
      src = ./..;
    in
    {
      overlays.default = final: _prev: {
        nixshard = final.callPackage ./package.nix { inherit src; };
      };

      packages = forAllSystems (
        _system: pkgs:
        let
          nixshard = pkgs.callPackage ./package.nix { inherit src; };
        in
        {
          inherit nixshard;
          default = nixshard;
        }
      );

      apps = forAllSystems (
        system: _pkgs: {
          default = {
            type = "app";
            program = "${self.packages.${system}.nixshard}/bin/nixshard";
          };
        }
      );

      # The module takes its package from pkgs.nixshard (lib.mkPackageOption):
      # add overlays.default to nixpkgs.overlays, or set services.nixshard.package.
      nixosModules.default = ./module.nix;
    };
}
