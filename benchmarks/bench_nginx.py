"""The reference of bench.py: nginx serving the file cache ``nix copy --to file://`` wrote."""

from __future__ import annotations

import os
import re
import subprocess
import time
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
    import httpx

    from nixshard.localnet import free_port

    conf_dir = bench.work / "nginx"
    (conf_dir / "tmp").mkdir(parents=True)
    port = free_port()
    conf = conf_dir / "nginx.conf"
    write_nginx_conf(conf, root, port)
    log = open(conf_dir / "stderr.log", "ab")
    bench.nginx = subprocess.Popen([find_tool("nginx") or "nginx", "-p", str(conf_dir), "-c",
                                    str(conf), "-e", str(conf_dir / "error.log")],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    log.close()
    bench.nginx_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and bench.nginx.poll() is None:
        try:
            if httpx.get(bench.nginx_url + "/nix-cache-info", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise BenchError(f"nginx did not serve {root}/nix-cache-info; see {conf_dir}/error.log")


def stop_nginx(bench: Bench) -> None:
    """Stop nginx (SIGTERM, then SIGKILL)."""
    if bench.nginx and bench.nginx.poll() is None:
        bench.nginx.terminate()
        try:
            bench.nginx.wait(5)
        except subprocess.TimeoutExpired:
            bench.nginx.kill()
            bench.nginx.wait()
