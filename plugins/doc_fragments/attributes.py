# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The attributes every module of this collection shares, declared once.

    C(firmvisor.hypervisor.attributes) is for modules that change something, and
    C(firmvisor.hypervisor.attributes.info_module) for those that only read. A module whose
    support differs overrides that one attribute in its own C(attributes).
    """

    # Modules that change something: check mode and diff mode for real, from the planned and
    # the actual object.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    description:
      - Can run in check mode and return the changed status and diff that a real run would
        have, without changing the host.
    support: full
  diff_mode:
    description:
      - Returns the object as it was before and as it is (or, in check mode, would be) after,
        when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''

    # Modules that only read: nothing to predict and no difference to show.
    INFO_MODULE = r'''
attributes:
  check_mode:
    description:
      - Can run in check mode and return the same result as a real run.
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    description:
      - Returns details on what has changed, when in diff mode.
    support: N/A
    details:
      - This action does not modify state.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''
