"""Settling uncertain posts through the account's own recent posts (`GET /2/users/{id}/tweets`).

One listing covers every lookup: the account (`GET /2/users/me`), its posts since the earliest attempt
(`start_time`, replies and reposts excluded), page after page. X shows links as t.co links, so a post is
ours when its words match with the links taken out and its `entities.urls` carry our own link (the tracked
link names the run, so an older post of the same words never passes for this one). X lists only the 3,200
most recent posts: a listing cut there proves nothing about what it did not reach.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import requests

from clarion.channels.reconcile import Found, Lookup, Verdict, missing, same_text, unknown

MAX_POSTS = 3200
PER_PAGE = 100


class CannotAsk(Exception):
    """X cannot be asked now; every lookup stays unknown, for this reason."""


def look_up(client: Any, user_auth: bool, lookups: Sequence[Lookup]) -> list[Found]:
    if not lookups:
        return []
    try:
        posts, complete = _posts(client, user_auth, min(lookup.since for lookup in lookups))
    except CannotAsk as exc:
        return unknown(lookups, str(exc))
    claimed: set[str] = set()
    found = []
    for lookup in lookups:
        answer = _match(posts, lookup, claimed)
        if answer is None:
            answer = (
                missing(lookup, "the account's posts")
                if complete
                else Found(
                    lookup.recipient,
                    Verdict.UNKNOWN,
                    f"X lists only the {MAX_POSTS:,} most recent posts; this one would be older",
                )
            )
        found.append(answer)
    return found


def _posts(client: Any, user_auth: bool, since: Any) -> tuple[list[Any], bool]:
    """The account's posts since `since`, and whether the listing reached its end."""
    me = _ask(client.get_me, user_auth=user_auth)
    if me.data is None:
        raise CannotAsk("X did not say whose account the token is")
    posts: list[Any] = []
    token = None
    while True:
        response = _ask(
            client.get_users_tweets,
            me.data.id,
            start_time=since,
            max_results=PER_PAGE,
            tweet_fields=["created_at", "entities"],
            exclude=["replies", "retweets"],
            pagination_token=token,
            user_auth=user_auth,
        )
        if response.errors and not response.data:
            detail = "; ".join(str(e.get("detail") or e.get("title") or e) for e in response.errors)
            raise CannotAsk(f"X refused to list the account's posts: {detail}")
        posts.extend(response.data or [])
        token = (response.meta or {}).get("next_token")
        if not token:
            return posts, True
        if len(posts) >= MAX_POSTS:
            return posts, False


def _match(posts: list[Any], lookup: Lookup, claimed: set[str]) -> Found | None:
    """The post that is this lookup's (claimed so no other lookup takes it), an UNKNOWN when one post has
    the words but X does not say which link it carries, or None."""
    text, link = lookup.message.text, lookup.message.link
    doubtful = None
    for post in posts:
        pid = str(post.id)
        if pid in claimed or (post.created_at is not None and post.created_at < lookup.since):
            continue
        if post.text == text:
            return _found(lookup, post, claimed)
        if not same_text(text, post.text, without_links=True):
            continue
        urls = [u.get("expanded_url") or u.get("unwound_url") for u in (post.entities or {}).get("urls", [])]
        if link and link in text and link in urls:
            return _found(lookup, post, claimed)
        if not urls and not (link and link in text):
            return _found(lookup, post, claimed)
        doubtful = pid  # its words, and no link or another one (another signing key since the run?)
    if doubtful is not None:
        detail = (
            f"X lists post {doubtful} with the same words but not this run's link (was CLARION_SECRET_KEY "
            "changed since the run?); check it on the account"
        )
        return Found(lookup.recipient, Verdict.UNKNOWN, detail)
    return None


def _found(lookup: Lookup, post: Any, claimed: set[str]) -> Found:
    pid = str(post.id)
    claimed.add(pid)
    stamp = post.created_at.isoformat(timespec="seconds") if post.created_at else "?"
    return Found(lookup.recipient, Verdict.SENT, f"X lists post {pid} (created {stamp})", pid)


def _ask(call: Any, *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, with X's refusals turned into CannotAsk saying why (never a credential)."""
    import tweepy

    try:
        return call(*args, **kwargs)
    except tweepy.TooManyRequests as exc:
        reset = exc.response.headers.get("x-rate-limit-reset")
        when = (
            time.strftime("%H:%M:%S UTC", time.gmtime(float(reset)))
            if reset and reset.isdigit()
            else "a while"
        )
        why = f"X's rate limit on reading posts: run `clarion reconcile` again after {when}"
        raise CannotAsk(why) from exc
    except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
        status = exc.response.status_code
        raise CannotAsk(
            f"X refused to list the account's posts (HTTP {status}): the token must be allowed to read "
            "them (X_ACCESS_TOKEN; X's free API tier may not include reading)"
        ) from exc
    except tweepy.HTTPException as exc:
        raise CannotAsk(f"X answered HTTP {exc.response.status_code} to the posts listing") from exc
    except requests.RequestException as exc:
        raise CannotAsk(f"cannot reach X to list the account's posts: {type(exc).__name__}") from exc
