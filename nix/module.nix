# nix/module.nix: NixOS module for nixshard (reference: docs/nixos.md).
#
#   services.nixshard.package        the nixshard package (pkgs.nixshard)
#   services.nixshard.gateway        `nixshard serve`: the Nix binary-cache HTTP
#                                    protocol in front of the shard network
#   services.nixshard.node           `nixshard node`: one storage node
#   services.nixshard.push           push.toml and the secrets of `nixshard push`
#   services.nixshard.postBuildHook  every local build is spooled by Nix's
#                                    post-build-hook and pushed by the
#                                    nixshard-push-spool service
#   services.nixshard.maintenance    audit, repair and gc on systemd timers
#   services.nixshard.substituter    use a gateway as a substituter (nix.settings)
#
# Each daemon reads one TOML file rendered from its `settings` (the keys are
# the command's long options with `_` for `-`, see README.md). The dedicated
# options (listen, networkFile, cacheDir, dataDir, ...) fill `settings` with
# mkDefault, so a value set in `settings` itself wins.
#
# Users: a service runs as a systemd DynamicUser unless its `user` is set; the
# spool service runs as the static user `nixshard-push` (the post-build hook
# writes the spool as that user, see postBuildHook). Every unit gets the same
# strict sandbox (`sandbox` below).
#
# Secrets never enter the Nix store or the TOML files. The *File options
# (signingKeyFile, uploadCredentialsFile, cacheSecretFile, maintenanceKeyFile)
# are read by systemd (LoadCredential, as root) and handed to the service
# under $CREDENTIALS_DIRECTORY, which the command line names through systemd's
# %d specifier; `environmentFile` (systemd EnvironmentFile, also read by
# systemd as root) can set NIXSHARD_SIGNING_KEY, NIXSHARD_CACHE_SECRET and
# NIXSHARD_UPLOAD_CREDENTIALS instead. Give secret files as strings
# ("/run/secrets/nixshard.key"), not as Nix path literals, which would be
# copied into the world-readable store.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nixshard;
  toml = pkgs.formats.toml { };
  inherit (lib) mkOption types;

  gw = cfg.gateway;
  node = cfg.node;
  push = cfg.push;
  hook = cfg.postBuildHook;
  maint = cfg.maintenance;
  sub = cfg.substituter;

  exe = "${cfg.package}/bin/nixshard";

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

  # The systemd sandbox of every nixshard unit. They need the network (and the
  # nix-daemon's socket, AF_UNIX, for push) and their own directories, nothing else.
  sandbox = {
    UMask = "0077";
    LimitNOFILE = 65536;

    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    DevicePolicy = "closed";
    # A user namespace that maps only root and the unit's user. Compatible with
    # DynamicUser and with static users; turned off for ports below 1024
    # (bindCapability): a capability held inside a user namespace does not
    # reach the host's network namespace.
    PrivateUsers = true;
    RemoveIPC = true;
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
      "~@resources"
    ];
    SystemCallErrorNumber = "EPERM";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
  };

  # The long-running daemons come back after a crash; the oneshot maintenance
  # units do not (a failed run stays visible in `systemctl --failed`).
  restart = {
    Restart = "on-failure";
    RestartSec = 5;
  };

  # Ports below 1024 need CAP_NET_BIND_SERVICE; keep every other capability out.
  bindCapability =
    listen:
    lib.optionalAttrs (portOf listen < 1024) {
      CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
      AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
      PrivateUsers = false;
    };

  # Who a unit runs as: the DynamicUser `name` when `user` is null (units naming
  # the same dynamic user share its UID and may share a StateDirectory), else
  # the static `user` (and `group`, else that user's primary group).
  identity =
    name: user: group:
    if user == null then
      {
        DynamicUser = true;
        User = name;
        Group = name;
      }
    else
      {
        DynamicUser = false;
        User = user;
      }
      // lib.optionalAttrs (group != null) { Group = group; };

  # Secret files as systemd credentials: the command-line flags naming them
  # under %d (the credentials directory) and the LoadCredential lines. Each
  # is { name; file; } (file null: not given), its flag `--${name}` unless
  # it says another (`flag`).
  credentials =
    creds:
    let
      given = builtins.filter (c: c.file != null) creds;
    in
    {
      args = lib.concatMap (c: [
        (c.flag or "--${c.name}")
        "%d/${c.name}"
      ]) given;
      load = map (c: "${c.name}:${toString c.file}") given;
    };

  environmentFileConfig =
    file: lib.optionalAttrs (file != null) { EnvironmentFile = toString file; };

  # A writable directory: systemd's StateDirectory under /var/lib/ (created and
  # owned for the unit's user, dynamic or not), else ReadWritePaths plus a
  # tmpfiles rule that creates it for the unit's static user.
  underVarLib = dir: lib.hasPrefix "/var/lib/" dir;
  dataDirConfig =
    dir:
    if underVarLib dir then
      {
        StateDirectory = lib.removePrefix "/var/lib/" dir;
        StateDirectoryMode = "0700";
      }
    else
      { ReadWritePaths = [ dir ]; };
  tmpfilesRule =
    dir: user: group:
    "d ${dir} 0700 ${user} ${if group == null then "-" else group} - -";

  command = args: lib.escapeShellArgs args;

  # A hardened daemon listening on `listen`; `extra` adds to its serviceConfig.
  mkDaemon = description: listen: extra: {
    inherit description;
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    environment.PYTHONUNBUFFERED = "1";
    serviceConfig = sandbox // restart // bindCapability listen // extra;
  };

  # A maintenance run: a oneshot service and the timer that starts it.
  mkMaintenance = name: description: job: extra: {
    services.${name} = {
      inherit description;
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.PYTHONUNBUFFERED = "1";
      serviceConfig =
        sandbox // environmentFileConfig maint.environmentFile // { Type = "oneshot"; } // extra;
    };
    timers.${name} = {
      inherit description;
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = job.startAt;
        # A run missed while the machine was off starts at the next boot.
        Persistent = true;
      };
    };
  };

  settingsOption =
    program: file:
    mkOption {
      type = types.submodule { freeformType = toml.type; };
      default = { };
      description = ''
        Contents of the ${file} given to `nixshard ${program} --config`. Keys
        are the long options of `nixshard ${program}` with `_` for `-`
        (repeatable options take a list); see README.md. Only file paths may
        name secrets, never the secrets themselves.
      '';
    };

  environmentFileOption =
    what:
    mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/nixshard.env";
      description = ''
        File of `NAME=value` lines (systemd EnvironmentFile, read by systemd
        as root) for ${what}: the way to give secrets as environment
        variables, e.g. NIXSHARD_SIGNING_KEY (the key text),
        NIXSHARD_CACHE_SECRET (the keyring text) and
        NIXSHARD_UPLOAD_CREDENTIALS (the credentials lines). A secret given by
        a *File option wins. Give a string path outside the store.
      '';
    };

  userOption =
    what:
    mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "nixshard";
      description = ''
        Static user ${what} runs as; null runs it as a systemd DynamicUser.
        The module does not create the user: declare it in `users.users`
        (a system user is enough: systemd creates and chowns the unit's
        state and cache directories and hands it its credentials).
      '';
    };

  groupOption =
    what:
    mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Group ${what} runs as, with a static `user`; null: that user's primary group.";
    };

  maintenanceJobOptions = name: default: what: {
    enable = lib.mkEnableOption "`nixshard ${name}` on a timer: ${what}";
    startAt = mkOption {
      type = types.either types.str (types.listOf types.str);
      inherit default;
      example = "*-*-* 03:00:00";
      description = ''
        When to run `nixshard ${name}` (systemd.time(7) calendar events, the
        timer's OnCalendar; missed runs start at the next boot).
      '';
    };
    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        More arguments of `nixshard ${name}` (see README.md), each one word.
        systemd expands its specifiers (%d, %S, ...) and $VARIABLES in them.
      '';
    };
  };

  gatewayConfig = toml.generate "nixshard-gateway.toml" gw.settings;
  nodeConfig = toml.generate "nixshard-node.toml" node.settings;
  pushConfig =
    if push.configFile != null then push.configFile else toml.generate "nixshard-push.toml" push.settings;

  # The gateway's state directory: the audit timer writes the node scores
  # there (as the gateway's user) and the gateway reads them at start.
  gatewayState = "nixshard-gateway";
  scoresFile = "/var/lib/${gatewayState}/scores.json";
  auditReport = "/var/lib/${gatewayState}/audit-report.json";

  # The network file of the maintenance units: theirs, else the gateway's.
  maintNetwork =
    if maint.networkFile != null then
      maint.networkFile
    else if gw.enable then
      gw.networkFile
    else
      null;
  anyMaintenance = maint.audit.enable || maint.repair.enable || maint.gc.enable;
  # repair and gc sign with the maintainer key, given as their --signing-key.
  maintCreds = credentials [
    {
      name = "maintenance-key";
      flag = "--signing-key";
      file = maint.maintenanceKeyFile;
    }
  ];

  # Nix runs the post-build hook as root in the nix-daemon. It drops to the
  # push user first, so the spool is written and read by one unprivileged user
  # and root never writes into a directory another user controls. The hook
  # needs `nix-store` (its Nix 2.8.0 fallback) and coreutils on PATH.
  hookScript = pkgs.writeShellScript "nixshard-post-build-hook" ''
    export NIXSHARD_SPOOL_DIR=${lib.escapeShellArg hook.spoolDir}
    export PATH=${
      lib.makeBinPath [
        config.nix.package
        pkgs.coreutils
      ]
    }:$PATH
    exec ${pkgs.util-linux}/bin/setpriv --reuid=${push.user} --regid=${push.group} --clear-groups --no-new-privs \
      ${pkgs.bash}/bin/bash ${./post-build-hook.sh}
  '';
in
{
  options.services.nixshard = {
    package = lib.mkPackageOption pkgs "nixshard" { };

    gateway = {
      enable = lib.mkEnableOption "the nixshard gateway (`nixshard serve`), a Nix binary cache backed by the shard network";

      settings = settingsOption "serve" "gateway.toml";

      networkFile = mkOption {
        type = types.path;
        example = "/etc/nixshard/network.toml";
        description = ''
          The network file (written by `nixshard network init`). It holds
          only public data, so a path literal (copied to the store) is fine.
          Sets `settings.network`.
        '';
      };

      listen = mkOption {
        type = types.str;
        default = "127.0.0.1:5000";
        example = "0.0.0.0:5000";
        description = "HOST:PORT to serve the binary-cache protocol on. Sets `settings.listen`.";
      };

      signingKeyFile = mkOption {
        type = types.nullOr types.path;
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

      uploadCredentialsFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/nixshard-upload";
        description = ''
          Credentials file (`USER:SECRET[:SCOPES]` lines) of the
          clients allowed to upload with `nix copy --to http://gateway`
          (credentials from the client's netrc) and, on a private network, to
          read. Passed as the credential `upload-credentials`; give a string
          path outside the store. Without it the gateway refuses uploads.
        '';
      };

      cacheSecretFile = mkOption {
        type = types.nullOr types.path;
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

      environmentFile = environmentFileOption "the gateway";

      workers = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 4;
        description = ''
          Processes serving the gateway's port (SO_REUSEPORT); they share the
          disk cache (one fill per NAR), the access log and /metrics. null:
          the number of cores. Sets `settings.workers`.
        '';
      };

      cacheDir = mkOption {
        type = types.str;
        default = "/var/cache/nixshard-gateway";
        description = ''
          Local disk cache of rebuilt NARs and staged uploads. Must lie under /var/cache/:
          systemd creates it (CacheDirectory) for the service user.
          Sets `settings.cache_dir`; bound it with `settings.cache_max_bytes`.
        '';
      };

      user = userOption "the gateway (and the audit timer, which writes the gateway's node scores)";
      group = groupOption "the gateway";

      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the gateway's TCP port in the firewall.";
      };
    };

    node = {
      enable = lib.mkEnableOption "a nixshard storage node (`nixshard node`)";

      settings = settingsOption "node" "node.toml";

      dataDir = mkOption {
        type = types.str;
        default = "/var/lib/nixshard-node";
        example = "/srv/disk1/nixshard";
        description = ''
          Where the node keeps shards and signed records (an absolute path).
          Under /var/lib/ systemd creates it (StateDirectory) for the service
          user, dynamic or not. Anywhere else the node needs a static `user`
          (a DynamicUser's UID may change between starts): a tmpfiles rule
          creates the directory for that user (mode 0700) and the sandbox
          lets the node write there (ReadWritePaths); chown existing data to
          the user yourself. Sets `settings.data`.
        '';
      };

      listen = mkOption {
        type = types.str;
        default = "0.0.0.0:9001";
        description = "HOST:PORT of the node's HTTP API. Sets `settings.listen`.";
      };

      networkFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          The network file; the node accepts writes signed by its
          `publishers` (and deletes by its `maintainers`). Sets `settings.network`.
        '';
      };

      nodeId = mkOption {
        type = types.str;
        default = config.networking.hostName;
        defaultText = lib.literalExpression "config.networking.hostName";
        description = ''
          This node's id in the network file. Every signed write names the
          node it is meant for, so with `networkFile` set the node refuses to
          start under an id the file does not list. Sets `settings.node_id`.
        '';
      };

      acceptPublishers = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "mycache-1:BASE64..." ];
        description = ''
          Further publisher public keys (`name:base64`) whose signed writes
          the node accepts. Sets `settings.accept_publisher`.
        '';
      };

      keyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/var/lib/nixshard-keys/node.key";
        description = ''
          This node's ed25519 key file (`nixshard node join-request --key
          FILE` makes one and prints what to hand the maintainers). The
          node's id derives from the key, so `nodeId` is not used, and the
          node signs its `has`, record-absence and proof answers. Read by
          systemd and passed as the credential `node-key` (`--key
          %d/node-key`); give a string path outside the store.
        '';
      };

      mapFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          A signed network map (docs/network-map.md) to keep and serve while
          the node holds none yet; the node then follows newer epochs from
          its peers, and without `networkFile` takes its publishers and
          maintainers from the newest map. Sets `settings.map`.
        '';
      };

      bootstrapFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          A bootstrap file (`nixshard map bootstrap`): the maintainer keys
          that sign epoch 1 and nodes to ask for maps. Sets
          `settings.bootstrap`.
        '';
      };

      environmentFile = environmentFileOption "the node";

      user = userOption "the node";
      group = groupOption "the node";

      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the node's TCP port in the firewall.";
      };
    };

    push = {
      settings = settingsOption "push" "push.toml";

      networkFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/etc/nixshard/network.toml";
        description = "The network file pushed to. Sets `settings.network`.";
      };

      configFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/etc/nixshard/push.toml";
        description = ''
          A hand-written push.toml used instead of the one generated from
          `settings` (which is then ignored). It must be readable by the push
          user.
        '';
      };

      signingKeyFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/nixshard-signing.key";
        description = ''
          Publisher secret key file (`nix-store --generate-binary-cache-key`)
          that signs what is pushed; the network file's `publishers` must list
          its public half. Passed as the credential `signing-key` (systemd
          reads it as root); give a string path outside the store. Or set
          NIXSHARD_SIGNING_KEY in `environmentFile`.
        '';
      };

      cacheSecretFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/nixshard-cache.keyring";
        description = ''
          Keyring of a private network (`nixshard key generate-cache-secret`):
          what is pushed is sealed with its first secret. Passed as the
          credential `cache-secret`; give a string path outside the store.
          Or set NIXSHARD_CACHE_SECRET in `environmentFile`.
        '';
      };

      environmentFile = environmentFileOption "the spool service (`nixshard push --spool`)";

      user = mkOption {
        type = types.str;
        default = "nixshard-push";
        description = ''
          Static user of the spool service; the post-build hook drops to it
          to write the spool, so it cannot be a DynamicUser. The module
          creates `nixshard-push`; another user must exist, be allowed to use
          the nix-daemon (nix.settings.allowed-users, everyone by default)
          and need not be trusted.
        '';
      };

      group = mkOption {
        type = types.str;
        default = "nixshard-push";
        description = "Group of the spool service and of the spool (created by the module when `nixshard-push`).";
      };
    };

    postBuildHook = {
      enable = lib.mkEnableOption ''
        publishing every local build: Nix's post-build-hook
        (nix.settings.post-build-hook, nix/post-build-hook.sh) writes the
        paths it built to `spoolDir` in milliseconds, never touching the
        network, and the nixshard-push-spool service (`nixshard push
        --spool`) pushes them with their closures, retrying until the network
        takes them. Configure the push with `services.nixshard.push`'';

      spoolDir = mkOption {
        type = types.str;
        default = "/var/spool/nixshard";
        description = ''
          The spool directory (an absolute path; NIXSHARD_SPOOL_DIR of the
          hook). A tmpfiles rule creates it, mode 0700, for the push user;
          the hook and the service both write it as that user.
        '';
      };
    };

    maintenance = {
      networkFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/etc/nixshard/network.toml";
        description = ''
          The network file the maintenance timers work on; null: the
          gateway's `networkFile` when the gateway is enabled.
        '';
      };

      maintenanceKeyFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/nixshard-maintenance.key";
        description = ''
          Secret key file of a maintainer (listed under the network file's
          `maintainers`, or any publisher when it lists none) that signs
          repair's writes and gc's deletes; needed by repair and gc. Passed
          as the credential `maintenance-key` (`--signing-key
          %d/maintenance-key`); give a string path outside the store.
        '';
      };

      environmentFile = environmentFileOption "the audit, repair and gc runs";

      user = userOption "repair and gc (audit runs as the gateway's user)";
      group = groupOption "repair and gc";

      audit = maintenanceJobOptions "audit" "hourly" ''
        challenge every node to prove it holds a sample of its shards. The
        scores go to /var/lib/nixshard-gateway/scores.json, which the gateway
        reads at start (`settings.scores`), the JSON report to
        /var/lib/nixshard-gateway/audit-report.json; a run that flags a node
        fails (exit status 1)'';
      repair = maintenanceJobOptions "repair" "daily" "rebuild lost and corrupt shards, copy records to their windows";
      gc = maintenanceJobOptions "gc" "weekly" ''
        expire records and delete unreferenced shards (give --max-age or
        --max-idle in extraArgs to expire records)'';
    };

    substituter = {
      enable = lib.mkEnableOption "a nixshard gateway as a substituter of this machine's Nix";

      url = mkOption {
        type = types.str;
        example = "http://gateway.lan:5000";
        description = ''
          The gateway's URL. Defaults to the local gateway when
          `services.nixshard.gateway.enable` is set.
        '';
      };

      publicKey = mkOption {
        type = types.str;
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
        workers = lib.mkIf (gw.workers != null) (lib.mkDefault gw.workers);
        scores = lib.mkIf maint.audit.enable (lib.mkDefault scoresFile);
      };

      services.nixshard.substituter.url = lib.mkDefault (localUrl gw.settings.listen);

      assertions = [
        {
          assertion = lib.hasPrefix "/var/cache/" gw.settings.cache_dir;
          message = "services.nixshard.gateway: the cache directory must lie under /var/cache/ (systemd CacheDirectory)";
        }
        {
          assertion =
            !(gw.settings ? signing_key)
            && !(gw.settings ? upload_credentials)
            && !(gw.settings ? cache_secret);
          message = "services.nixshard.gateway: use signingKeyFile / uploadCredentialsFile / cacheSecretFile (systemd credentials) or environmentFile instead of settings.signing_key / settings.upload_credentials / settings.cache_secret";
        }
      ];

      systemd.services.nixshard-gateway =
        let
          creds = credentials [
            {
              name = "signing-key";
              file = gw.signingKeyFile;
            }
            {
              name = "upload-credentials";
              file = gw.uploadCredentialsFile;
            }
            {
              name = "cache-secret";
              file = gw.cacheSecretFile;
            }
          ];
        in
        mkDaemon "nixshard gateway: Nix binary cache served from the shard network" gw.settings.listen (
          identity "nixshard-gateway" gw.user gw.group
          // environmentFileConfig gw.environmentFile
          // {
            ExecStart = command (
              [
                exe
                "serve"
                "--config"
                "${gatewayConfig}"
              ]
              ++ creds.args
            );
            LoadCredential = creds.load;
            CacheDirectory = lib.removePrefix "/var/cache/" gw.settings.cache_dir;
            CacheDirectoryMode = "0700";
          }
          // lib.optionalAttrs maint.audit.enable {
            StateDirectory = gatewayState;
            StateDirectoryMode = "0700";
          }
        );

      networking.firewall.allowedTCPPorts = lib.mkIf gw.openFirewall [ (portOf gw.settings.listen) ];
    })

    (lib.mkIf node.enable {
      services.nixshard.node.settings = {
        data = lib.mkDefault node.dataDir;
        listen = lib.mkDefault node.listen;
        node_id = lib.mkIf (node.keyFile == null) (lib.mkDefault node.nodeId);
        network = lib.mkIf (node.networkFile != null) (lib.mkDefault node.networkFile);
        map = lib.mkIf (node.mapFile != null) (lib.mkDefault node.mapFile);
        bootstrap = lib.mkIf (node.bootstrapFile != null) (lib.mkDefault node.bootstrapFile);
        accept_publisher = lib.mkIf (node.acceptPublishers != [ ]) (lib.mkDefault node.acceptPublishers);
      };

      assertions = [
        {
          assertion = lib.hasPrefix "/" node.settings.data;
          message = "services.nixshard.node: the data directory must be an absolute path, not `${node.settings.data}'";
        }
        {
          assertion = underVarLib node.settings.data || node.user != null;
          message = "services.nixshard.node: a data directory outside /var/lib/ (${node.settings.data}) needs a static services.nixshard.node.user to own it (a DynamicUser's UID may change between starts)";
        }
        {
          assertion =
            node.settings ? network
            || node.settings ? map
            || node.settings ? bootstrap
            || (node.settings.accept_publisher or [ ]) != [ ];
          message = "services.nixshard.node: set networkFile or acceptPublishers (or mapFile / bootstrapFile, whose map names the publishers); otherwise no publisher can write to the node";
        }
        {
          assertion = !(node.settings ? key);
          message = "services.nixshard.node: use keyFile (a systemd credential) instead of settings.key";
        }
      ];

      systemd.services.nixshard-node =
        let
          creds = credentials [
            {
              name = "node-key";
              file = node.keyFile;
              flag = "--key";
            }
          ];
        in
        mkDaemon "nixshard storage node" node.settings.listen (
          identity "nixshard-node" node.user node.group
          // environmentFileConfig node.environmentFile
          // dataDirConfig node.settings.data
          // {
            ExecStart = command (
              [
                exe
                "node"
                "--config"
                "${nodeConfig}"
              ]
              ++ creds.args
            );
          }
          // lib.optionalAttrs (node.keyFile != null) { LoadCredential = creds.load; }
        );

      systemd.tmpfiles.rules = lib.mkIf (!underVarLib node.settings.data && node.user != null) [
        (tmpfilesRule node.settings.data node.user node.group)
      ];

      networking.firewall.allowedTCPPorts = lib.mkIf node.openFirewall [ (portOf node.settings.listen) ];
    })

    (lib.mkIf hook.enable {
      services.nixshard.push.settings.network = lib.mkIf (push.networkFile != null) (
        lib.mkDefault push.networkFile
      );

      assertions = [
        {
          assertion = push.configFile != null || push.settings ? network;
          message = "services.nixshard.push: set networkFile (or settings.network, or configFile)";
        }
        {
          assertion = !(push.settings ? signing_key) && !(push.settings ? cache_secret);
          message = "services.nixshard.push: use signingKeyFile / cacheSecretFile (systemd credentials) or environmentFile instead of settings.signing_key / settings.cache_secret";
        }
        {
          assertion = push.signingKeyFile != null || push.environmentFile != null || push.configFile != null;
          message = "services.nixshard.push: the spool service needs a signing key: set signingKeyFile (or NIXSHARD_SIGNING_KEY in environmentFile)";
        }
        {
          assertion = lib.hasPrefix "/" hook.spoolDir;
          message = "services.nixshard.postBuildHook: spoolDir must be an absolute path, not `${hook.spoolDir}'";
        }
      ];

      nix.settings.post-build-hook = hookScript;

      systemd.tmpfiles.rules = [ (tmpfilesRule hook.spoolDir push.user push.group) ];

      systemd.services.nixshard-push-spool =
        let
          creds = credentials [
            {
              name = "signing-key";
              file = push.signingKeyFile;
            }
            {
              name = "cache-secret";
              file = push.cacheSecretFile;
            }
          ];
        in
        {
          description = "nixshard: push the store paths the post-build hook spools";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [
            "network-online.target"
            "nix-daemon.socket"
          ];
          # `nix path-info` asks the nix-daemon for each closure.
          path = [ config.nix.package ];
          environment = {
            PYTHONUNBUFFERED = "1";
            XDG_CACHE_HOME = "/var/cache/nixshard-push";
          };
          serviceConfig =
            sandbox
            // restart
            // identity "nixshard-push" push.user push.group
            // environmentFileConfig push.environmentFile
            // {
              ExecStart = command (
                [
                  exe
                  "push"
                  "--config"
                  "${pushConfig}"
                  "--spool"
                  hook.spoolDir
                ]
                ++ creds.args
              );
              LoadCredential = creds.load;
              ReadWritePaths = [ hook.spoolDir ];
              # Nix's own cache ($XDG_CACHE_HOME/nix) of the push user.
              CacheDirectory = "nixshard-push";
              CacheDirectoryMode = "0700";
              # `nix` raises its stack limit to 64 MiB at start unless it is
              # that already; setrlimit is blocked here (~@resources).
              LimitSTACK = "64M";
              # SIGTERM lets the push in progress finish (records already
              # written are consistent either way; unpushed files stay spooled).
              TimeoutStopSec = 120;
            };
        };

      users.users = lib.mkIf (push.user == "nixshard-push") {
        nixshard-push = {
          isSystemUser = true;
          group = push.group;
          description = "nixshard spool (post-build hook and nixshard-push-spool)";
        };
      };
      users.groups = lib.mkIf (push.group == "nixshard-push") { nixshard-push = { }; };
    })

    (lib.mkIf anyMaintenance {
      assertions = [
        {
          assertion = maintNetwork != null;
          message = "services.nixshard.maintenance: set networkFile (or enable the gateway, whose networkFile is used)";
        }
        {
          assertion = !(maint.repair.enable || maint.gc.enable) || maint.maintenanceKeyFile != null;
          message = "services.nixshard.maintenance: repair and gc sign with a maintainer key: set maintenanceKeyFile";
        }
      ];
    })

    (lib.mkIf maint.audit.enable {
      systemd =
        mkMaintenance "nixshard-audit" "nixshard audit: proofs of storage from every node, node scores"
          maint.audit
          (
            identity "nixshard-gateway" gw.user gw.group
            // {
              ExecStart = command (
                [
                  exe
                  "audit"
                  "--network"
                  "${maintNetwork}"
                  "--scores"
                  scoresFile
                  "--report"
                  auditReport
                ]
                ++ maint.audit.extraArgs
              );
              StateDirectory = gatewayState;
              StateDirectoryMode = "0700";
            }
          );
    })

    (lib.mkIf maint.repair.enable {
      systemd =
        mkMaintenance "nixshard-repair" "nixshard repair: rebuild lost and corrupt shards" maint.repair
          (
            identity "nixshard-repair" maint.user maint.group
            // {
              ExecStart = command (
                [
                  exe
                  "repair"
                  "--network"
                  "${maintNetwork}"
                ]
                ++ maintCreds.args
                ++ maint.repair.extraArgs
              );
              LoadCredential = maintCreds.load;
            }
          );
    })

    (lib.mkIf maint.gc.enable {
      systemd =
        mkMaintenance "nixshard-gc" "nixshard gc: expire records, delete unreferenced shards" maint.gc
          (
            identity "nixshard-gc" maint.user maint.group
            // {
              ExecStart = command (
                [
                  exe
                  "gc"
                  "--network"
                  "${maintNetwork}"
                ]
                ++ maintCreds.args
                ++ maint.gc.extraArgs
              );
              LoadCredential = maintCreds.load;
            }
          );
    })

    (lib.mkIf sub.enable {
      # NixOS adds cache.nixos.org with mkAfter, so this one is listed first;
      # Nix orders substituters by their Priority anyway (gateway 30, cache.nixos.org 40).
      nix.settings.substituters = [ sub.url ];
      nix.settings.trusted-public-keys = [ sub.publicKey ];
    })
  ];
}
