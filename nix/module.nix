# nix/module.nix: NixOS module for nixshard.
#
#   services.nixshard.gateway        `nixshard serve`: the Nix binary-cache HTTP
#                                    protocol in front of the shard network
#   services.nixshard.node           `nixshard node`: one storage node
#   services.nixshard.postBuildHook  push every local build (nix.settings.post-build-hook)
#   services.nixshard.substituter    use a gateway as a substituter (nix.settings)
#
# Each daemon reads one TOML file rendered from its `settings` (the keys are
# the command's long options with `_` for `-`, see README.md) and runs as a
# systemd DynamicUser with a strict sandbox. The dedicated options (listen,
# networkFile, cacheDir, dataDir, ...) fill `settings` with mkDefault, so a
# value set in `settings` itself wins.
#
# Secrets never enter the Nix store or the TOML files: signingKeyFile and
# uploadCredentialsFile are read by systemd (LoadCredential, as root) and
# handed to the service under $CREDENTIALS_DIRECTORY, which the command line
# names through systemd's %d specifier. Give them as strings
# ("/run/secrets/nixshard.key"), not as Nix path literals, which would be
# copied into the world-readable store.
#
# Example:
#
#   services.nixshard.gateway = {
#     enable = true;
#     networkFile = ./network.toml;          # public: node URLs and publisher keys
#     listen = "0.0.0.0:5000";
#     openFirewall = true;
#     settings.priority = 30;
#   };
#   services.nixshard.substituter = {
#     enable = true;                          # url defaults to the local gateway
#     publicKey = "mycache-1:BASE64...";
#   };
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nixshard;
  toml = pkgs.formats.toml { };

  # "host:port" / "[::]:port" -> the port as an int.
  portOf = listen: lib.toInt (lib.last (lib.splitString ":" listen));

  # The URL under which a daemon listening on `listen` is reached from this host.
  localUrl =
    listen:
    let
      port = lib.last (lib.splitString ":" listen);
      host = lib.removeSuffix ":${port}" listen;
      reachable =
        if host == "" || host == "0.0.0.0" then
          "127.0.0.1"
        else if host == "[::]" then
          "[::1]"
        else
          host;
    in
    "http://${reachable}:${port}";

  # The systemd sandbox shared by both daemons. They need the network and
  # their one writable directory, nothing else.
  hardening = {
    DynamicUser = true;
    Restart = "on-failure";
    RestartSec = 5;
    UMask = "0077";

    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    # No JIT anywhere: CPython, pynacl (cffi without callbacks), zstd and
    # ISA-L (dispatch picks precompiled SIMD code) never map W+X pages.
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    SystemCallErrorNumber = "EPERM";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
  };

  # Ports below 1024 need CAP_NET_BIND_SERVICE; keep every other capability out.
  bindCapability =
    listen:
    lib.optionalAttrs (portOf listen < 1024) {
      CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
      AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
    };

  # A hardened, always-on service listening on `listen`; `extra` adds to its serviceConfig.
  mkService =
    description: listen: extra: {
      inherit description;
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.PYTHONUNBUFFERED = "1";
      serviceConfig = hardening // bindCapability listen // extra;
    };

  settingsOption =
    command: file:
    lib.mkOption {
      type = lib.types.submodule { freeformType = toml.type; };
      default = { };
      description = ''
        Contents of the ${file} given to `nixshard ${command} --config`. Keys
        are the long options of `nixshard ${command}` with `_` for `-`
        (repeatable options take a list); see README.md. Only file paths may
        name secrets, never the secrets themselves.
      '';
    };

  gw = cfg.gateway;
  node = cfg.node;
  hook = cfg.postBuildHook;
  sub = cfg.substituter;

  gatewayConfig = toml.generate "nixshard-gateway.toml" gw.settings;
  nodeConfig = toml.generate "nixshard-node.toml" node.settings;

  # `nixshard push` needs `nix` (path-info, NAR dumps) and the hook `nix-store`
  # (its Nix 2.8.0 fallback) on PATH; the hook runs
  # in the nix-daemon's environment, as root.
  hookScript = pkgs.writeShellScript "nixshard-post-build-hook" ''
    export NIXSHARD_BIN=${cfg.package}/bin/nixshard
    export NIXSHARD_PUSH_CONFIG=${lib.escapeShellArg "${hook.configFile}"}
    export PATH=${lib.makeBinPath [ config.nix.package ]}:$PATH
    exec ${pkgs.bash}/bin/bash ${./post-build-hook.sh}
  '';
in
{
  options.services.nixshard = {
    package = lib.mkOption {
      type = lib.types.package;
      default = if pkgs ? nixshard then pkgs.nixshard else pkgs.callPackage ./package.nix { src = ../.; };
      defaultText = lib.literalExpression "pkgs.nixshard or (pkgs.callPackage ./package.nix { src = ../.; })";
      description = "The nixshard package.";
    };

    gateway = {
      enable = lib.mkEnableOption "the nixshard gateway (`nixshard serve`), a Nix binary cache backed by the shard network";

      settings = settingsOption "serve" "gateway.toml";

      networkFile = lib.mkOption {
        type = lib.types.path;
        example = "/etc/nixshard/network.toml";
        description = ''
          The network file (written by `nixshard network init`). It holds
          only public data, so a path literal (copied to the store) is fine.
          Sets `settings.network`.
        '';
      };

      listen = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1:5000";
        example = "0.0.0.0:5000";
        description = "HOST:PORT to serve the binary-cache protocol on. Sets `settings.listen`.";
      };

      signingKeyFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = "/run/secrets/nixshard-signing.key";
        description = ''
          Secret key file (as made by `nix-store --generate-binary-cache-key`)
          that signs the network records of uploads and upstream copies (and,
          with `settings.sign_uploads`, the narinfo of unsigned uploads); the
          network file's `publishers` must list its public half. Read by
          systemd and passed as the credential `signing-key`; give a string
          path outside the store.
        '';
      };

      uploadCredentialsFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = "/run/secrets/nixshard-upload";
        description = ''
          File of `user:password` lines allowed to upload with
          `nix copy --to http://gateway` (credentials from the client's
          netrc). Passed as the credential `upload-credentials`; give a string
          path outside the store. Without it the gateway refuses uploads.
        '';
      };

      cacheSecretFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = "/run/secrets/nixshard-cache-secret";
        description = ''
          Keyring file of a private network (`private = true` in the network
          file), as written by `nixshard key generate-cache-secret`: the
          gateway opens the network's sealed records and chunks with it. Passed
          as the credential `cache-secret`; give a string path outside the
          store. A private gateway also needs `uploadCredentialsFile`: its
          reads require credentials (docs/private-caches.md).
        '';
      };

      cacheDir = lib.mkOption {
        type = lib.types.str;
        default = "/var/cache/nixshard-gateway";
        description = ''
          Local disk cache of rebuilt NARs and staged uploads. Must lie under /var/cache/:
          systemd creates it (CacheDirectory) for the dynamic service user.
          Sets `settings.cache_dir`; bound it with `settings.cache_max_bytes`.
        '';
      };

      openFirewall = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Open the gateway's TCP port in the firewall.";
      };
    };

    node = {
      enable = lib.mkEnableOption "a nixshard storage node (`nixshard node`)";

      settings = settingsOption "node" "node.toml";

      dataDir = lib.mkOption {
        type = lib.types.str;
        default = "/var/lib/nixshard-node";
        description = ''
          Where the node keeps shards and signed records. Must lie under
          /var/lib/: systemd creates it (StateDirectory) for the dynamic
          service user. Sets `settings.data`.
        '';
      };

      listen = lib.mkOption {
        type = lib.types.str;
        default = "0.0.0.0:9001";
        description = "HOST:PORT of the node's HTTP API. Sets `settings.listen`.";
      };

      networkFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        description = ''
          The network file; the node accepts writes signed by its
          `publishers`. Sets `settings.network`.
        '';
      };

      nodeId = lib.mkOption {
        type = lib.types.str;
        default = config.networking.hostName;
        defaultText = lib.literalExpression "config.networking.hostName";
        description = ''
          This node's id in the network file. Every signed write names the
          node it is meant for, so with `networkFile` set the node refuses to
          start under an id the file does not list. Sets `settings.node_id`.
        '';
      };

      acceptPublishers = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "mycache-1:BASE64..." ];
        description = ''
          Further publisher public keys (`name:base64`) whose signed writes
          the node accepts. Sets `settings.accept_publisher`.
        '';
      };

      openFirewall = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Open the node's TCP port in the firewall.";
      };
    };

    postBuildHook = {
      enable = lib.mkEnableOption ''
        pushing every local build to the shard network with `nixshard push`
        (nix.settings.post-build-hook). The push is synchronous and a failing
        push stops Nix's build loop'';

      configFile = lib.mkOption {
        type = lib.types.path;
        default = "/etc/nixshard/push.toml";
        description = ''
          The push.toml given to `nixshard push --config`, with the keys
          `network` and `signing_key` (absolute paths; the hook runs as
          root, so a root-only key file works) and optionally `jobs`. It
          names the key file and holds no secret itself.
        '';
      };
    };

    substituter = {
      enable = lib.mkEnableOption "a nixshard gateway as a substituter of this machine's Nix";

      url = lib.mkOption {
        type = lib.types.str;
        example = "http://gateway.lan:5000";
        description = ''
          The gateway's URL. Defaults to the local gateway when
          `services.nixshard.gateway.enable` is set.
        '';
      };

      publicKey = lib.mkOption {
        type = lib.types.str;
        example = "mycache-1:BASE64...";
        description = "Public key (`name:base64`) of the publisher whose `Sig:` Nix must trust.";
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf gw.enable {
      services.nixshard.gateway.settings = {
        network = lib.mkDefault gw.networkFile;
        listen = lib.mkDefault gw.listen;
        cache_dir = lib.mkDefault gw.cacheDir;
      };

      services.nixshard.substituter.url = lib.mkDefault (localUrl gw.settings.listen);

      assertions = [
        {
          assertion = lib.hasPrefix "/var/cache/" gw.settings.cache_dir;
          message = "services.nixshard.gateway: the cache directory must lie under /var/cache/ (systemd CacheDirectory of a DynamicUser service)";
        }
        {
          assertion =
            !(gw.settings ? signing_key)
            && !(gw.settings ? upload_credentials)
            && !(gw.settings ? cache_secret);
          message = "services.nixshard.gateway: use signingKeyFile / uploadCredentialsFile / cacheSecretFile (systemd credentials) instead of settings.signing_key / settings.upload_credentials / settings.cache_secret";
        }
      ];

      systemd.services.nixshard-gateway =
        mkService "nixshard gateway: Nix binary cache served from the shard network"
          gw.settings.listen
          {
            ExecStart = lib.concatStringsSep " " (
              [
                "${cfg.package}/bin/nixshard"
                "serve"
                "--config"
                "${gatewayConfig}"
              ]
              ++ lib.optionals (gw.signingKeyFile != null) [
                "--signing-key"
                "%d/signing-key"
              ]
              ++ lib.optionals (gw.uploadCredentialsFile != null) [
                "--upload-credentials"
                "%d/upload-credentials"
              ]
              ++ lib.optionals (gw.cacheSecretFile != null) [
                "--cache-secret"
                "%d/cache-secret"
              ]
            );
            LoadCredential =
              lib.optional (gw.signingKeyFile != null) "signing-key:${toString gw.signingKeyFile}"
              ++ lib.optional (
                gw.uploadCredentialsFile != null
              ) "upload-credentials:${toString gw.uploadCredentialsFile}"
              ++ lib.optional (gw.cacheSecretFile != null) "cache-secret:${toString gw.cacheSecretFile}";
            CacheDirectory = lib.removePrefix "/var/cache/" gw.settings.cache_dir;
            CacheDirectoryMode = "0700";
          };

      networking.firewall.allowedTCPPorts = lib.mkIf gw.openFirewall [ (portOf gw.settings.listen) ];
    })

    (lib.mkIf node.enable {
      services.nixshard.node.settings = {
        data = lib.mkDefault node.dataDir;
        listen = lib.mkDefault node.listen;
        node_id = lib.mkDefault node.nodeId;
        network = lib.mkIf (node.networkFile != null) (lib.mkDefault node.networkFile);
        accept_publisher = lib.mkIf (node.acceptPublishers != [ ]) (lib.mkDefault node.acceptPublishers);
      };

      assertions = [
        {
          assertion = lib.hasPrefix "/var/lib/" node.settings.data;
          message = "services.nixshard.node: the data directory must lie under /var/lib/ (systemd StateDirectory of a DynamicUser service)";
        }
        {
          assertion = node.settings ? network || (node.settings.accept_publisher or [ ]) != [ ];
          message = "services.nixshard.node: set networkFile or acceptPublishers; otherwise no publisher can write to the node";
        }
      ];

      systemd.services.nixshard-node = mkService "nixshard storage node" node.settings.listen {
        ExecStart = "${cfg.package}/bin/nixshard node --config ${nodeConfig}";
        StateDirectory = lib.removePrefix "/var/lib/" node.settings.data;
        StateDirectoryMode = "0700";
      };

      networking.firewall.allowedTCPPorts = lib.mkIf node.openFirewall [ (portOf node.settings.listen) ];
    })

    (lib.mkIf hook.enable {
      nix.settings.post-build-hook = hookScript;
    })

    (lib.mkIf sub.enable {
      # NixOS adds cache.nixos.org with mkAfter, so this one is listed first;
      # Nix orders substituters by their Priority anyway (gateway 30, cache.nixos.org 40).
      nix.settings.substituters = [ sub.url ];
      nix.settings.trusted-public-keys = [ sub.publicKey ];
    })
  ];
}
