"""pysnc, ServiceNow's Python SDK, reading the connector's three tables.

Usage: pysnc_read.py INSTANCE_URL USER (defaults|tuned); the password comes
from PYSNC_PASSWORD, the CA bundle from REQUESTS_CA_BUNDLE. Prints the number
of rows read.

- defaults: GlideRecord as it comes (500-row batches, every column, display
  values for all fields).
- tuned: the best settings pysnc offers for a bulk read: 10,000-row batches,
  only the connector's columns, no display values, no reference links.
"""

import os
import sys

import pysnc

TABLES = {
    "cmdb_ci_computer": "sys_id,name,os,os_version,os_service_pack,cpu_type,category,asset_tag,"
    "virtual,u_criticality,used_for,u_last_logged_on_user,u_most_frequent_user,sys_class_name,"
    "u_primary_business_application,sys_updated_on",
    "cmdb_ci_network_adapter": "sys_id,name,mac_address,ip_address,ip_default_gateway,cmdb_ci",
    "cmdb_ci_business_app": "sys_id,number,name,u_criticality,business_criticality",
}


def main():
    url, user, mode = sys.argv[1:4]
    client = pysnc.ServiceNowClient(url, (user, os.environ["PYSNC_PASSWORD"]))
    rows = 0
    for table, fields in TABLES.items():
        if mode == "tuned":
            gr = client.GlideRecord(table, batch_size=10000)
            gr.fields = fields
            gr.display_value = False
            gr.exclude_reference_link = True
        else:
            gr = client.GlideRecord(table)
        gr.query()
        for _ in gr:
            rows += 1
    print(rows)


if __name__ == "__main__":
    main()
