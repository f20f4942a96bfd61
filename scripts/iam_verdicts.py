"""cloudsplaining's verdict on IAM policy documents, for xtask/src/tidy/scanners.rs.

Reads a JSON list of {"owner": ..., "document": <policy document>} on stdin; prints a JSON list of
{"owner", "privilege_escalation", "resource_exposure", "data_exfiltration"}, each the findings of
that kind (cloudsplaining's own analysis, which counts only actions allowed on every resource).
"""

import json
import sys

from cloudsplaining.scan.policy_document import PolicyDocument

verdicts = []
for item in json.load(sys.stdin):
    policy = PolicyDocument(item["document"])
    verdicts.append(
        {
            "owner": item["owner"],
            "privilege_escalation": [
                escalation["type"] if isinstance(escalation, dict) else escalation
                for escalation in policy.allows_privilege_escalation
            ],
            "resource_exposure": policy.permissions_management_without_constraints,
            "data_exfiltration": policy.allows_data_exfiltration_actions,
        }
    )
json.dump(verdicts, sys.stdout)
