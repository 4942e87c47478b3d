#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: firmvisor developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: image_build
short_description: Build the firmvisor embedded hypervisor image, unless it is current
version_added: 0.1.0
description:
  - Builds the embedded image from Debian packages through the build machine's own apt sources
    (a raw GPT disk image with a boot partition for UEFI and BIOS, slots A and B and a state
    partition; the same system as a bootable ISO; the slot's squashfs, kernel and initrd) and writes
    C(manifest.json) beside them with the version, the inputs' digest, every package with its
    version and the sha256 of every artifact.
  - The inputs are the version, the package list and the candidate version of each package in the
    build machine's apt sources, the apt sources and every file of the image source tree. When the
    manifest in O(dest) records the same inputs and the artifacts are unchanged, nothing is built
    (C(changed=false)).
  - The build machine is the host the task runs on, which need not be the controller; the action
    plugin of the same name copies the image source tree there and runs the build one step at a time,
    printing each step as it starts and finishes with its time.
  - Usually called by the C(firmvisor.hypervisor.image) role.
  - Runs as root on a Debian build machine with mmdebstrap, squashfs-tools, GRUB (grub-pc-bin,
    grub-efi-amd64-bin), mtools, dosfstools, e2fsprogs, fdisk, xorriso and busybox-static.
author:
  - firmvisor developers (@firmvisor)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dest:
    description: Directory of the artifacts and the manifest.
    type: path
    required: true
  files:
    description:
      - The image source tree (the collection's C(image/) directory, or a copy of it), on the controller.
        The action plugin copies it to the build host (without C(dev/), the developers' harnesses).
      - Defaults to the collection's own C(image/).
    type: path
  version:
    description: Image version, written into the image and the manifest.
    type: str
    default: 0.1.0
  packages:
    description: The package list, instead of the role's C(packages.list).
    type: list
    elements: str
  extra_packages:
    description: Packages added to the package list.
    type: list
    elements: str
    default: []
  apt_sources:
    description:
      - apt source files (one-line or deb822) to build from. Defaults to the build machine's own
        (C(/etc/apt/sources.list) and C(/etc/apt/sources.list.d/)); no mirror is built in.
    type: list
    elements: path
  iso:
    description: Also build the bootable ISO (virtual media, live or installer).
    type: bool
    default: true
  debug:
    description:
      - Build a debug image, for developing the image itself, never for production. Its GRUB menu can
        be edited; its initramfs opens a shell on the console where it would reboot, and honours
        C(fv.break=1) and C(fv.debug=1); systemd's emergency mode gives a shell where it would
        reboot. The default image has no unauthenticated shell anywhere.
    type: bool
    default: false
  force:
    description: Build even when the image is current.
    type: bool
    default: false
  work_dir:
    description: Scratch directory of the build. Defaults to C(<dest>/.work); it is removed after a build.
    type: path
  step:
    description:
      - Set by the action plugin, which runs the build one step at a time; leave it out.
      - C(all) plans and builds in one call; C(plan) decides and prepares a build; a step id runs that
        step; C(finish) moves the artifacts into place and writes the manifest.
    type: str
    default: all
    choices: [all, plan, rootfs, initramfs, squashfs, kernel, boot, disk, iso, finish]
  archive:
    description:
      - Set by the action plugin; leave it out. A tar of the image source tree on the build host,
        unpacked into O(files) before anything else.
    type: path
'''

EXAMPLES = r'''
- name: Build (or keep) the image on the build host the task runs on
  firmvisor.hypervisor.image_build:
    dest: /var/lib/firmvisor/images/0.1.0
    extra_packages: [tcpdump]
  register: image
'''

RETURN = r'''
reason:
  description: Why the image was (or would be) built, or C(current).
  returned: always
  type: str
  sample: inputs changed
manifest:
  description: The manifest (in check mode with a build pending, only the inputs).
  returned: always
  type: dict
  contains:
    version: {description: "Image version.", type: str, returned: success}
    inputs: {description: "The inputs and their digest.", type: dict, returned: always}
    packages: {description: "Installed packages and their versions.", type: dict, returned: success}
    artifacts: {description: "Each artifact's size, mtime and sha256.", type: dict, returned: success}
    steps: {description: "The build steps and their seconds.", type: list, elements: dict, returned: success}
steps:
  description: The steps a build runs (id and title); empty when the image is current.
  returned: when step is plan
  type: list
  elements: dict
'''

from ansible_collections.firmvisor.hypervisor.plugins.module_utils.image.build import IMAGE_ARGSPEC, ensure_image
from ansible_collections.firmvisor.hypervisor.plugins.module_utils.engine.module import run_module


def main():
    run_module(IMAGE_ARGSPEC, lambda module: ensure_image(module.params, module.check_mode))


if __name__ == '__main__':
    main()
