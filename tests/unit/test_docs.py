# -*- coding: utf-8 -*-
"""Each module's DOCUMENTATION matches its argument spec (as ansible-test's validate-modules checks
too, in `make sanity`; this is the quick check without it). Also EXAMPLES and RETURN parse, and the
attributes every module shares come from the one doc fragment."""

from __future__ import annotations

import importlib
import os

import pytest
import yaml

from ansible_collections.firmvisor.hypervisor.plugins.doc_fragments import bmc, connection

FRAGMENTS = {'firmvisor.hypervisor.connection': connection.ModuleDocFragment,
             'firmvisor.hypervisor.bmc': bmc.ModuleDocFragment}

MODULES_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'plugins', 'modules')
NO_LIBVIRT = ['image_build']  # modules that take no connection options
ATTRIBUTES = 'firmvisor.hypervisor.attributes'
# image_build is being moved with the image tree (issue 6 part 5); it switches at that merge.
OWN_ATTRIBUTES = ['image_build']
MODULES = sorted(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith('.py') and name != '__init__.py')


def captured_argspec(module):
    """Run the module's main() with run_module replaced, to see the spec it builds."""
    seen = {}

    def fake_run_module(argument_spec, handler, **kwargs):
        seen['spec'], seen['kwargs'] = argument_spec, kwargs
    module.run_module = fake_run_module
    module.main()
    return seen['spec']


def compare(doc_options, spec, where):
    assert sorted(doc_options) == sorted(spec), '%s: documented %s, argspec %s' % (where, sorted(doc_options), sorted(spec))
    for name, doc in doc_options.items():
        arg = spec[name]
        here = '%s.%s' % (where, name)
        assert doc.get('type', 'str') == arg.get('type', 'str'), here + ': type'
        assert doc.get('required', False) == arg.get('required', False), here + ': required'
        assert doc.get('default') == arg.get('default'), here + ': default'
        assert doc.get('choices') == arg.get('choices'), here + ': choices'
        assert doc.get('elements') == arg.get('elements'), here + ': elements'
        assert bool(doc.get('no_log')) is False  # no_log is never documented as an option key
        assert doc.get('description'), here + ': description'
        if 'options' in arg or 'suboptions' in doc:
            compare(doc.get('suboptions', {}), arg.get('options', {}), here)


@pytest.mark.parametrize('name', MODULES)
def test_documentation_matches_argspec(name):
    module = importlib.import_module('ansible_collections.firmvisor.hypervisor.plugins.modules.' + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc['module'] == name and doc['short_description'] and doc['version_added']
    options = dict(doc.get('options') or {})
    for fragment in doc.get('extends_documentation_fragment', []):
        if fragment in FRAGMENTS:  # the collection's option fragments (not attributes)
            options.update(yaml.safe_load(FRAGMENTS[fragment].DOCUMENTATION)['options'])
    compare(options, captured_argspec(module), name)
    assert yaml.safe_load(module.EXAMPLES)
    returns = yaml.safe_load(module.RETURN)
    assert all(value.get('description') and value.get('returned') for value in returns.values())


def test_every_module_is_in_the_action_group():
    runtime = yaml.safe_load(open(os.path.join(MODULES_DIR, '..', '..', 'meta', 'runtime.yml')))
    assert sorted(runtime['action_groups']['libvirt']) == [m for m in MODULES if m not in NO_LIBVIRT]


@pytest.mark.parametrize('name', MODULES)
def test_ansible_doc_renders(name):
    """ansible-doc itself (with the doc fragments merged) renders the module."""
    import json
    import subprocess
    import sys
    import ansible_collections.firmvisor.hypervisor as collection
    collections_path = os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path)
    ansible_doc = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    proc = subprocess.run([ansible_doc, '--json', 'firmvisor.hypervisor.' + name], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)['firmvisor.hypervisor.' + name]['doc']
    assert ('uri' in doc['options']) is (name not in NO_LIBVIRT)
    assert doc['attributes']['check_mode']['support'] == 'full'
    assert all(attribute.get('description') for attribute in doc['attributes'].values())


@pytest.mark.parametrize('name', [m for m in MODULES if m not in OWN_ATTRIBUTES])
def test_attributes_come_from_the_fragment(name):
    """No module repeats the shared attributes block: it names the fragment (changing or reading)."""
    module = importlib.import_module('ansible_collections.firmvisor.hypervisor.plugins.modules.' + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    fragments = doc.get('extends_documentation_fragment', [])
    assert 'attributes' not in doc, name + ': attributes belong in the doc fragment'
    assert len([f for f in fragments if f.startswith(ATTRIBUTES)]) == 1, fragments
    assert 'ansible.builtin.action_common_attributes' not in fragments  # the fragment has the descriptions
    reads_only = name.endswith('_info')
    assert (ATTRIBUTES + '.info_module' in fragments) is reads_only


def test_attribute_fragments_parse():
    from ansible_collections.firmvisor.hypervisor.plugins.doc_fragments.attributes import ModuleDocFragment as Attributes
    changing = yaml.safe_load(Attributes.DOCUMENTATION)['attributes']
    reading = yaml.safe_load(Attributes.INFO_MODULE)['attributes']
    assert changing['check_mode']['support'] == changing['diff_mode']['support'] == 'full'
    assert reading['check_mode']['support'] == 'full' and reading['diff_mode']['support'] == 'N/A'
    assert changing['platform']['platforms'] == reading['platform']['platforms'] == 'posix'
