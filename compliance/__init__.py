"""IEC 62304 / ISO 14971 documentation as data, its generators, and the audit log.

``compliance.audit`` is the tamper-evident audit log the appliance writes;
``compliance.gen`` renders the documents in ``compliance/`` into ``var/compliance``.
"""
