"""`python -m chaos` (`make chaos`): a conversion job on a bad day, then a verdict on the portal.

A sandbox portal with 10,000 leads (`--quick`: 1,000) installs the app the Market way (the web app
under gunicorn, tokens proven at the sandbox's OAuth server, events bound). The admin starts a
conversion job the way the app page does (a pending journal job, then `Jobs.run_job`), and
`b24app worker` processes run it while the portal misbehaves: about 10% of REST requests fail
(500s, connections dropped before or after the call ran, slow answers), every access token
expires every 500 requests, three workers are killed with SIGKILL (each replaced at once, as a
supervisor would) and the admin flips the CRM to Simple mid-run (the platform then converts the
remaining active leads itself).

The verdict reads the portal's own records (`demo.checks` over the sandbox core, no b24app code):
no lead active at the start is lost, no lead has two deals, contacts or companies (b24app's by
ORIGIN_ID plus the platform's by LEAD_ID), every open activity is as the converter's rule says
(b24app's policy, or the platform's for leads it converted), and nothing else was touched.
"""
