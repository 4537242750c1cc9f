#!/usr/bin/env python3
"""Prints the ratios the README reports, from criterion's estimates of the last `cargo bench`.

Usage: python3 benches/ratios.py [CARGO_TARGET_DIR]   (default: $CARGO_TARGET_DIR or target)
Each ratio compares two benchmarks of the same run (median time per iteration).
"""
import json
import os
import sys

root = os.path.join(
    sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", "target"),
    "criterion",
)


def median(group, bench):
    path = os.path.join(root, group, bench, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def row(label, group, ours, base, note=""):
    a, b = median(group, ours), median(group, base)
    if a is None or b is None:
        return
    print(f"| {label} | {fmt_ns(a)} | {fmt_ns(b)} | **{a / b:.2f}x** | {note} |")


print("| comparison | ours | baseline | ratio | |")
print("| --- | --- | --- | --- | --- |")
for shape in ["bare", "3_headers", "json_request_body"]:
    g = f"attach_{shape}"  # criterion writes "attach/x" as attach_x
    row(f"attach, {shape}: DouyinAuth / SetRequestHeader", g, "douyin_auth", "set_request_header")
    row(f"attach, {shape}: DouyinAuth without retry / SetRequestHeader", g,
        "douyin_auth_no_retry", "set_request_header")
g = "json_answer_1k"
row("1 KiB JSON answer: DouyinAuth (peek) / SetRequestHeader", g, "douyin_auth", "set_request_header")
row("1 KiB JSON answer: DouyinAuth (peek) / SetRequestHeader + Value parse", g,
    "douyin_auth", "set_request_header+value_parse")
a, b, v = (median(g, "douyin_auth"), median(g, "set_request_header"),
           median(g, "set_request_header+value_parse"))
if None not in (a, b, v):
    print(f"| 1 KiB JSON answer: cost of the peek / cost of a Value parse | {fmt_ns(a - b)} "
          f"| {fmt_ns(v - b)} | **{(a - b) / (v - b):.2f}x** | differences to the baseline |")
row("classifier alone / serde_json::Value parse (1 KiB)", "classify_1k", "douyin_expiry_peek",
    "serde_json_value")
row("classifier alone: scan / structured parse (1 KiB)", "classify_1k", "douyin_expiry_peek",
    "douyin_expiry_parse")
row("32 KiB JSON answer: DouyinAuth (peek) / SetRequestHeader", "json_answer_32k", "douyin_auth",
    "set_request_header")
row("classifier alone: scan / structured parse (32 KiB)", "classify_32k", "douyin_expiry_scan",
    "douyin_expiry_parse")
row("32 KiB JSON answer, peek limit raised to 64 KiB (read and scanned) / SetRequestHeader",
    "json_answer_32k", "douyin_auth_peek_limit_64k", "set_request_header")
for bench, what in [("douyin_auth", "default limit: handed over unread"),
                    ("douyin_auth_peek_limit_64k", "limit 64 KiB: read and scanned")]:
    a, b = median("json_answer_32k", bench), median("json_answer_32k", "set_request_header")
    if None not in (a, b):
        print(f"| 32 KiB JSON answer, {what}: the layer's own cost per KiB | {fmt_ns((a - b) / 32)} "
              f"| | | (ours - baseline) / 32 |")
a = median("classify_32k", "memchr_pass")
if a is not None:
    print(f"| one memchr pass over 32 KiB (the floor of any scan), per KiB | {fmt_ns(a / 32)} | | | "
          f"two passes (escapes, code keys) are the scan's least |")
for n in ["1", "100000"]:
    g = f"per_user_{n}_users"
    row(f"a cached user's request, {n} users cached: UserTokenLayer / SetRequestHeader", g,
        "user_token_layer", "set_request_header")
    row(f"a cached user's request, {n} users cached: UserTokenLayer / DouyinAuth", g,
        "user_token_layer", "douyin_auth", "the slot lookup: one hash, a lock-free map")
row("clock read: tokio's Instant::now (test-util on) / std's", "parts", "tokio_instant_now",
    "std_instant_now", "the cache's freshness check reads it once per request")
g = "parts"
for bench, what in [("std_instant_now", "clock read (std)"),
                    ("arc_clone_drop", "Arc clone + drop"),
                    ("shared_header_clone_drop", "shared HeaderValue clone + drop")]:
    a, b = median(g, bench), median("attach_bare", "set_request_header")
    if None not in (a, b):
        print(f"| {what} / bare SetRequestHeader request | {fmt_ns(a)} | {fmt_ns(b)} "
              f"| **{a / b:.2f}x** | a part of the hot path against the whole baseline |")
for threads in [1, 2]:
    g = f"reads_{threads}_threads"
    for base in ["mutex", "rwlock"]:
        a, b = median(g, "douyin_auth"), median(g, base)
        if None not in (a, b):
            print(f"| {threads} thread(s): throughput DouyinAuth / {base} | {fmt_ns(a)} "
                  f"| {fmt_ns(b)} | **{b / a:.2f}x** | time per request on each thread |")
for impl in ["douyin_auth", "mutex", "rwlock"]:
    a, b = median("reads_2_threads", impl), median("reads_1_threads", impl)
    if None not in (a, b):
        print(f"| {impl}: time per request, 2 threads / 1 thread | {fmt_ns(a)} | {fmt_ns(b)} "
              f"| **{a / b:.2f}x** | 1.00x is perfect scaling |")
row("10,000 requests on a cold cache / the fetch alone", "stampede_10k_cold", "10k_requests",
    "fetch_alone", "one fetch, asserted")
