"""The alerting payloads live in protocol.alerting (units read them too)."""

from protocol.alerting import (
    Alert as Alert,
)
from protocol.alerting import (
    AlertId as AlertId,
)
from protocol.alerting import (
    AlertState as AlertState,
)
from protocol.alerting import (
    ArmingAudit as ArmingAudit,
)
from protocol.alerting import (
    ArmingHow as ArmingHow,
)
from protocol.alerting import (
    ArmingMode as ArmingMode,
)
from protocol.alerting import (
    ArmingState as ArmingState,
)
from protocol.alerting import (
    Ns as Ns,
)
from protocol.alerting import (
    OperatorCommand as OperatorCommand,
)
from protocol.alerting import (
    OperatorName as OperatorName,
)
from protocol.alerting import (
    RuleName as RuleName,
)
from protocol.alerting import (
    Severity as Severity,
)
