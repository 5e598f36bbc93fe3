"""Telling a security scanner's fetch from a reader's click.

Mail security gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda...) fetch every
link of a message within seconds of delivery, to check where it leads. Counted as clicks they make
every reader look engaged and every action link look followed. A click is a scanner's when:

- its User-Agent is a known robot's (crawlerdetect's patterns, plus the mail gateways it does not
  know), or there is none (every browser sends one); or
- it is part of a burst: one recipient's clicks on BURST_LINKS different links of one mail (or on
  every link of a mail with fewer) within BURST_WINDOW. No one reads a mail and follows three of its
  links inside ten seconds; a scanner does it every time.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

BURST_WINDOW = timedelta(seconds=10)
BURST_LINKS = 3
# Mail gateways that fetch links and that crawlerdetect (a list of web crawlers) does not name.
MAIL_GATEWAYS = re.compile(
    r"mimecast|proofpoint|urldefense|messagelabs|symantec|trend ?micro|forcepoint|sophos|zscaler|fireeye|"
    r"ironport|appriver|avanan|check ?point|mcafee|fortinet|fortiguard|safelinks|cloudmark|vade|hornetsecurity",
    re.IGNORECASE)


@lru_cache(maxsize=1)
def _crawlers():
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


@lru_cache(maxsize=4096)  # a send's clicks come from a few hundred distinct agents
def is_scanner_agent(user_agent: str) -> bool:
    """True for a robot's User-Agent, or none at all."""
    user_agent = user_agent.strip()
    if not user_agent:
        return True
    return bool(MAIL_GATEWAYS.search(user_agent)) or _crawlers().isCrawler(user_agent)


def is_burst(links_clicked: set[int], links_in_mail: int) -> bool:
    """Whether one recipient's clicks within BURST_WINDOW (`links_clicked`, link ids) are a scanner's."""
    return links_in_mail >= 2 and len(links_clicked) >= min(BURST_LINKS, links_in_mail)
