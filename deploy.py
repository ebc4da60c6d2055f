"""Rebuild the forge VPS (runbook steps 2-7): `pyinfra INVENTORY deploy.py`.

Orchestration only: every step is a @deploy function in tasks/, its settings in group_data/.
Each converges, so the whole deploy is safe to re-run at any point, also after a cut-off run.
"""

from pyinfra import host
from pyinfra.api import DeployError

from phoenix.deploy_events import attach as report_operations
from phoenix.settings import wrong_types
from tasks import firewall, https
from tasks._speed import speed_up
from tasks.backend import run_backend
from tasks.backups import configure_backups
from tasks.base import install_base
from tasks.cron import install_cron
from tasks.dispatch import dispatch_issues
from tasks.firewall import firewall_host
from tasks.gitea import install_gitea
from tasks.hardening import harden_host
from tasks.hermes import install_hermes, start_hermes_install
from tasks.https import serve_https
from tasks.layout import make_layout
from tasks.litestream import replicate_databases
from tasks.restore import restore_gitea, verify_backup
from tasks.role import record_role
from tasks.ssh import harden_ssh
from tasks.standby import keep_warm
from tasks.timmy_config import deploy_timmy_config
from tasks.wizards import run_wizards

# every setting of the wrong type, one line each, before any operation (phoenix/settings.py)
bad_settings = wrong_types(host.data)
if bad_settings:
    raise DeployError("; ".join(bad_settings))
speed_up()  # many facts in one SSH round trip, the same answers (tasks/_speed.py)
report_operations()  # to `phoenix recover`'s live view, through pyinfra's callbacks
# pip beside apt: the longest two; the packages of the later tasks in the same apt run
install_base(
    beside_packages=start_hermes_install, later_packages=https.PACKAGES + firewall.PACKAGES
)
record_role()
make_layout()
deploy_timmy_config()
verify_backup()  # a backup that fails verification stops the deploy before Gitea is touched
install_gitea()
restore_gitea()
serve_https()
install_hermes()
run_backend()
run_wizards()
dispatch_issues()
install_cron()
harden_ssh()
configure_backups()
replicate_databases()
keep_warm()
firewall_host()
harden_host()
