"""The reference of bench.py: nginx serving the file cache ``nix copy --to file://`` wrote."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from benchmarks.bench_env import find_tool
from benchmarks.bench_measure import BenchError
from benchmarks.bench_run import Bench

NGINX_CONF = """\
worker_processes 1;
daemon off;
{user}pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types {{ text/x-nix-narinfo narinfo; text/plain nix-cache-info; }}
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def write_nginx_conf(conf: Path, root: Path, port: int) -> None:
    """A minimal nginx.conf serving ``root``; directives this nginx lacks are dropped."""
    nginx = find_tool("nginx") or "nginx"
    user = "user root root;\n" if os.geteuid() == 0 else ""
    text = NGINX_CONF.format(user=user, dir=conf.parent, port=port, root=root)
    for _ in range(6):
        conf.write_text(text)
        test = subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e",
                               str(conf.parent / "error.log")], capture_output=True, text=True)
        unknown = re.search(r'unknown directive "(\w+)"', test.stderr)
        if test.returncode == 0 or not unknown:
            if test.returncode:
                raise BenchError(f"nginx -t: {test.stderr}")
            return
        text = "\n".join(line for line in text.splitlines()
                         if not line.strip().startswith(unknown.group(1) + " ")) + "\n"
    raise BenchError("nginx.conf: too many unknown directives")


def start_nginx(bench: Bench, root: Path) -> None:
    """nginx serving the file cache ``root`` on a free port (bench.nginx, bench.nginx_url)."""
    from nixshard.localnet import LocalNetworkError, ManagedProcess, free_port

    conf_dir = bench.work / "nginx"
    (conf_dir / "tmp").mkdir(parents=True)
    port = free_port()
    conf = conf_dir / "nginx.conf"
    write_nginx_conf(conf, root, port)
    bench.nginx = ManagedProcess(
        "nginx", ["-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "error.log")],
        f"http://127.0.0.1:{port}", conf_dir / "stderr.log", health_path="/nix-cache-info",
        program=(find_tool("nginx") or "nginx",))
    bench.nginx_url = bench.nginx.url
    try:
        bench.nginx.start().wait_ready(10)
    except LocalNetworkError as exc:
        raise BenchError(f"nginx did not serve {root}/nix-cache-info; see "
                         f"{conf_dir}/error.log") from exc


def stop_nginx(bench: Bench) -> None:
    """Stop nginx (SIGTERM, then SIGKILL after 5 s)."""
    if bench.nginx:
        bench.nginx.stop(5)
