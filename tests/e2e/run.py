#!/usr/bin/env python3
"""End to end with the real programs: a Prometheus rule fires, Debian's Alertmanager posts to the
release binary of alertmanager-sipgate (with the basic_auth of its http_config), which sends SMS to
a fake Sipgate on loopback. Checks the SMS text and recipients for a critical and a warning alert,
then the resolved SMS. Needs prometheus, prometheus-alertmanager and a Rust toolchain.

    python3 tests/e2e/run.py
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "e2e")
BERLIN_TIME = r"[A-Z][a-z]{2} \d{2} \d{2}:\d{2} CET"
ALICE, BOB = "+4915228817386", "+4915254599371"
# base64("token-E2E001:00000000-1111-4222-8333-444444444444")
SIPGATE_AUTH = "Basic dG9rZW4tRTJFMDAxOjAwMDAwMDAwLTExMTEtNDIyMi04MzMzLTQ0NDQ0NDQ0NDQ0NA=="

passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok: {name}")
    else:
        failed += 1
        print(f"FAILED: {name}\n{detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except Exception as e:  # noqa: BLE001 - any failure means "not yet"
        return None, str(e)


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def render(template, target, **values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    with open(target, "w") as f:
        f.write(text)
    return target


def main():
    for tool in ("prometheus", "promtool", "prometheus-alertmanager", "amtool"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install prometheus prometheus-alertmanager")
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "--release", "--bin", "alertmanager-sipgate",
         "--example", "fake-sipgate"],
        cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="e2e-")
    ports = {name: free_port() for name in ("fake", "service", "alertmanager", "prometheus")}
    sms_log = os.path.join(work, "sms.jsonl")
    # Both alerts stop firing at this time, so that the resolved notifications follow.
    ends = int(time.time()) + 25
    processes = []

    def start(name, args):
        log = open(os.path.join(work, f"{name}.log"), "w")
        processes.append((name, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=work)))

    try:
        with open(os.path.join(work, "am-password"), "w") as f:
            f.write("e2e-s3cret\n")
        config = render("config.yml", os.path.join(work, "config.yml"), fake=ports["fake"])
        os.symlink(os.path.join(ROOT, "examples", "templates"), os.path.join(work, "templates"))
        am_config = render("alertmanager.yml", os.path.join(work, "alertmanager.yml"),
                           service=ports["service"])
        render("rules.yml", os.path.join(work, "rules.yml"), ends=ends)
        prom_config = render("prometheus.yml", os.path.join(work, "prometheus.yml"),
                             alertmanager=ports["alertmanager"])
        subprocess.run(["amtool", "check-config", am_config], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["promtool", "check", "config", prom_config], check=True, stdout=subprocess.DEVNULL)

        start("fake-sipgate", [os.path.join(ROOT, "target/release/examples/fake-sipgate"),
                               "--listen", f"127.0.0.1:{ports['fake']}", "--record", sms_log])
        start("alertmanager-sipgate", [os.path.join(ROOT, "target/release/alertmanager-sipgate"),
                                       f"--config.file={config}",
                                       f"--web.listen-address=127.0.0.1:{ports['service']}"])
        start("alertmanager", ["prometheus-alertmanager", f"--config.file={am_config}",
                               f"--storage.path={work}/am-data",
                               f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                               "--cluster.listen-address=",
                               f"--web.external-url=http://127.0.0.1:{ports['alertmanager']}"])
        start("prometheus", ["prometheus", f"--config.file={prom_config}",
                             f"--storage.tsdb.path={work}/tsdb",
                             f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                             "--rules.alert.resend-delay=1s"])
        wait_until("alertmanager-sipgate ready",
                   lambda: get(f"http://127.0.0.1:{ports['service']}/-/ready")[0] == 200, 20)

        def sms():
            if not os.path.exists(sms_log):
                return []
            with open(sms_log) as f:
                return [json.loads(line) for line in f if line.strip()]

        wait_until("three firing SMS", lambda: len(sms()) >= 3, 60)
        firing = sms()
        check("every SMS carried the Sipgate token",
              all(s["authorization"] == SIPGATE_AUTH and s["smsId"] == "s0" for s in firing), firing)
        critical = sorted((s["recipient"], s["message"]) for s in firing if "E2EDiskFull" in s["message"])
        warning = [(s["recipient"], s["message"]) for s in firing if "E2EHighLatency" in s["message"]]
        check("critical alert texted to alice and bob", [r for r, _ in critical] == [ALICE, BOB], critical)
        pattern = rf"FIRING E2EDiskFull db1:9100 since {BERLIN_TIME}: Disk on db1 is 95% full"
        check("critical SMS text (built-in default template)",
              all(re.fullmatch(pattern, m) for _, m in critical), critical)
        check("warning alert texted to alice only, with the route's template",
              warning == [(ALICE, "FIRING E2EHighLatency@web1:8080")], warning)

        wait_until("two resolved SMS", lambda: len(sms()) >= 5, 90)
        time.sleep(5)  # a few more group intervals: nothing else may arrive
        after = sms()
        resolved = sorted((s["recipient"], s["message"]) for s in after[3:])
        pattern = rf"RESOLVED E2EDiskFull db1:9100 at {BERLIN_TIME}: Disk on db1 is 95% full"
        check("resolved SMS to alice and bob",
              [r for r, _ in resolved] == [ALICE, BOB] and all(re.fullmatch(pattern, m) for _, m in resolved),
              resolved)
        check("no resolved SMS for the route with send_resolved: false, and no duplicates",
              len(after) == 5, after)

        status, metrics = get(f"http://127.0.0.1:{ports['service']}/metrics")
        check("metrics: 3 SMS to alice and 2 to bob, nothing failed",
              'alertmanager_sipgate_sms_sent_total{recipient="alice",route="critical"} 2' in metrics
              and 'alertmanager_sipgate_sms_sent_total{recipient="alice",route="warnings"} 1' in metrics
              and 'alertmanager_sipgate_sms_sent_total{recipient="bob",route="critical"} 2' in metrics
              and not re.search(r"alertmanager_sipgate_sms_failed_total\{[^}]*\} [1-9]", metrics),
              metrics)
        check("alertmanager authenticated with basic_auth (no 401)",
              'code="401"' not in metrics and 'requests_total{code="200",endpoint="/alerts"}' in metrics,
              metrics)
    except Exception as e:  # noqa: BLE001 - reported as a failure with the logs below
        check("end-to-end run", False, repr(e))
    finally:
        for _, p in processes:
            p.terminate()
        for _, p in processes:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        service = [p for n, p in processes if n == "alertmanager-sipgate"]
        if service:
            check("alertmanager-sipgate exited cleanly on SIGTERM", service[0].returncode == 0,
                  f"exit code {service[0].returncode}")
        if failed:
            for name, _ in processes:
                print(f"----- {name}.log (last 40 lines)")
                with open(os.path.join(work, f"{name}.log")) as f:
                    print("".join(f.readlines()[-40:]))
        shutil.rmtree(work, ignore_errors=True)
    print(f"e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
