#!/usr/bin/env python3
"""Reads an iCalendar feed (RFC 5545) from standard input with the `icalendar` package, an
implementation independent of the service, and prints its events as JSON, one object each:
uid, start and end in UTC (RFC 3339), summary.

Before parsing it checks what `icalendar` forgives: every line ends with CRLF and is at most 75
octets long, and the feed is UTF-8. Exits 1 with the reason on anything else."""

import json
import sys
from datetime import datetime, timezone

from icalendar import Calendar


def check_lines(raw: bytes) -> None:
    if not raw.endswith(b"\r\n"):
        sys.exit("the feed does not end with CRLF")
    raw.decode("utf-8")
    for number, line in enumerate(raw[:-2].split(b"\r\n"), start=1):
        if b"\n" in line or b"\r" in line:
            sys.exit(f"line {number}: a bare LF or CR")
        if len(line) > 75:
            sys.exit(f"line {number}: {len(line)} octets, more than 75")


def utc(value) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        sys.exit(f"not an instant: {value!r}")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    raw = sys.stdin.buffer.read()
    check_lines(raw)
    calendar = Calendar.from_ical(raw)
    if calendar.get("VERSION") != "2.0":
        sys.exit(f"VERSION is {calendar.get('VERSION')!r}")
    events = [
        {
            "uid": str(event["UID"]),
            "start": utc(event.decoded("DTSTART")),
            "end": utc(event.decoded("DTEND")),
            "summary": str(event["SUMMARY"]),
        }
        for event in calendar.walk("VEVENT")
    ]
    json.dump(events, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
