# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``query`` option of the info modules: a JMESPath expression over their result."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.errors import FvError

QUERY_ARGSPEC = dict(query=dict(type='str'))


def apply_query(data: Dict[str, Any], query: Optional[str]) -> Dict[str, Any]:
    """Add ``query_result``: ``query`` (JMESPath) evaluated over ``data``."""
    if not query:
        return data
    try:
        import jmespath
    except ImportError:
        raise FvError('query needs the jmespath Python library on the host that runs the module')
    try:
        data['query_result'] = jmespath.search(query, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise FvError('query %r: %s' % (query, exc))
    return data
