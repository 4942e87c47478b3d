# firmvisor.hypervisor — developer and CI entry points. Nothing here prompts (CI has no terminal).
#
#   make setup     host packages + libvirtd, .venv, collection link, tiny test guest (idempotent)
#   make unit      unit tests (pytest, no daemon)
#   make lint      ansible-lint (production profile), shellcheck of every shell file
#   make sanity    ansible-test sanity, offline (a mirror of the checkout under .cache/sanity)
#   make molecule  Molecule scenario "default" against the local libvirtd
#   make embedded  Molecule scenario "embedded": build the image, boot it (SeaBIOS, OVMF), check it
#   make redfish   Molecule scenario "redfish": install the image on a blank box through sushy-emulator
#   make test      setup + unit + lint + sanity + molecule   (what .ci/run runs)
#   make demo      setup + playbooks/demo.yml
#   make demo-clean  remove what make demo made
#   make bench     setup + tests/bench/run.sh
#   make clean     remove .venv .collections .cache

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory
.DELETE_ON_ERROR:
.NOTPARALLEL:

VENV        := $(CURDIR)/.venv
COLLECTIONS := $(CURDIR)/.collections
CACHE       := $(CURDIR)/.cache
LINK        := $(COLLECTIONS)/ansible_collections/firmvisor/hypervisor

# One environment for every target: the venv's tools first, the repo's ansible.cfg, the
# collection through .collections (a link to this checkout), Ansible's state under .cache.
export PATH                       := $(VENV)/bin:$(PATH)
export VIRTUAL_ENV                := $(VENV)
export ANSIBLE_CONFIG             := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH   := $(COLLECTIONS)
export ANSIBLE_HOME               := $(CACHE)/ansible
export ANSIBLE_LOCAL_TEMP         := $(CACHE)/ansible/tmp
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT               := 1
export PYTHONDONTWRITEBYTECODE    := 1
ifneq ($(strip $(CI)),)
export ANSIBLE_NOCOLOR            := 1
export ANSIBLE_FORCE_COLOR        := 0
export NO_COLOR                   := 1
export PY_COLORS                  := 0
endif

.PHONY: help setup host venv collection guest unit lint sanity molecule embedded redfish test demo demo-clean bench clean

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

setup: host venv collection guest

host:
	@scripts/setup-host.sh

venv: host
	@scripts/setup-venv.sh

collection:
	@mkdir -p $(dir $(LINK)) $(CACHE)/ansible/tmp
	@if [ -d $(LINK) ] && [ ! -L $(LINK) ]; then \
	  echo "collection: $(LINK) is a directory, not a link (make clean)" >&2; exit 1; fi
	@if [ "$$(readlink $(LINK) 2>/dev/null)" != "../../.." ]; then \
	  ln -sfn ../../.. $(LINK) && echo "collection: $(LINK) -> $(CURDIR)"; \
	else echo "collection: up to date ($(LINK))"; fi

guest: host
	@scripts/build-guest.sh

unit: venv collection
	pytest -q tests/unit

# Every shell file of the checkout (tracked or new, not ignored), known by its #! line.
SHELL_FILES = $(shell git ls-files -z --cached --others --exclude-standard | \
	xargs -0 awk 'FNR == 1 && /^\#!(\/usr)?\/bin\/(env +)?(ba|da)?sh( |$$)/ { print FILENAME } { nextfile }' 2>/dev/null)

lint: venv collection
	ansible-lint --offline --profile production
	shellcheck $(SHELL_FILES)
	@echo "shellcheck: $(words $(SHELL_FILES)) shell files clean"

# tests/sanity/run.py [ansible-test sanity options], e.g. make sanity SANITY_ARGS='--test pep8'
sanity: venv
	python tests/sanity/run.py $(SANITY_ARGS)

molecule: setup
	molecule test -s default

embedded: setup
	molecule test -s embedded

redfish: setup
	molecule test -s redfish

test: setup unit lint sanity molecule

demo: setup
	ansible-playbook playbooks/demo.yml

demo-clean: venv collection
	ansible-playbook playbooks/demo_clean.yml

bench: setup
	tests/bench/run.sh

clean:
	rm -rf $(VENV) $(COLLECTIONS) $(CACHE)
