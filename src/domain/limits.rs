//! The one table of limits on text bursar stores (and on how many of a repeated value a
//! request may hold). Every RPC and CLI path that stores a string checks it here; README's
//! "Limits" table lists the same rows (a test keeps the two in step).
//!
//! Lengths count UTF-8 bytes. Values are also refused if they hold control characters: a
//! stored string is shown in tables and logged on one line.

/// A limit on one kind of stored text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the text is, as README names it.
    pub what: &'static str,
    /// Where it comes from (RPC fields, config keys, CLI flags).
    pub fields: &'static str,
    /// Longest accepted value, in bytes.
    pub max_bytes: usize,
}

/// A limit on the number of values of a repeated field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountLimit {
    pub what: &'static str,
    pub fields: &'static str,
    pub max: usize,
}

pub const REGION: Limit = Limit {
    what: "region or zone",
    fields: "MarkUnavailable region/zone, SelectProvider regions and data locations, budget scope.region",
    max_bytes: 64,
};
pub const MARK_REASON: Limit = Limit {
    what: "unavailability reason",
    fields: "MarkUnavailable reason, `bursar unavailable mark --reason`",
    max_bytes: 500,
};
pub const MARK_ID: Limit = Limit {
    what: "availability mark id",
    fields: "ClearUnavailable id",
    max_bytes: 64,
};
/// Budget names are also limited to letters, digits, spaces, `.`, `_` and `-`.
pub const BUDGET_NAME: Limit = Limit {
    what: "budget name",
    fields: "budget.name, `[[budgets]] name`",
    max_bytes: 100,
};
/// RFC 5321's limit on a forward path.
pub const EMAIL: Limit = Limit {
    what: "email address",
    fields: "budget.emails[], `[[budgets]] channels.emails`",
    max_bytes: 254,
};
pub const WEBHOOK_URL: Limit = Limit {
    what: "Slack webhook URL",
    fields: "budget.slack_webhooks[], `[[budgets]] channels.slack_webhooks`",
    max_bytes: 2048,
};
pub const SCOPE_VALUE: Limit = Limit {
    what: "budget scope provider, service or account",
    fields: "budget.scope.{provider,service,account}",
    max_bytes: 256,
};
pub const TIMEZONE: Limit = Limit {
    what: "timezone",
    fields: "budget.timezone",
    max_bytes: 64,
};
/// Tag keys: AWS allows 128 bytes, GCP labels 63, Azure 512 (rare beyond 256).
pub const TAG_KEY: Limit = Limit {
    what: "tag key",
    fields: "budget.scope.tag (key), GetSpend tag and group_by tag:<key>",
    max_bytes: 256,
};
/// The largest tag value any cloud allows (AWS, Azure: 256).
pub const TAG_VALUE: Limit = Limit {
    what: "tag value",
    fields: "budget.scope.tag (value), GetSpend tag",
    max_bytes: 256,
};
pub const LABEL_KEY: Limit = Limit {
    what: "label key",
    fields: "SelectProvider labels, `bursar select --label`",
    max_bytes: 128,
};
pub const LABEL_VALUE: Limit = Limit {
    what: "label value",
    fields: "SelectProvider labels, `bursar select --label`",
    max_bytes: 512,
};
/// Filters that are not stored but are compared with stored text (ListPrices, GetSpend).
pub const FILTER: Limit = Limit {
    what: "filter value",
    fields: "ListPrices region/instance_type/gpu_model, GetSpend provider/service/region/account",
    max_bytes: 256,
};
/// EC2 ids are 19 bytes, GCE ids 20 digits, Azure vmIds 36: room for other spellings.
pub const GPU_INSTANCE_ID: Limit = Limit {
    what: "GPU instance id",
    fields: "ReportGpuUtilization samples[].instance_id, `bursar agent --instance-id`",
    max_bytes: 128,
};
/// A GPU index or UUID (`GPU-…`, 40 bytes).
pub const GPU_ID: Limit = Limit {
    what: "GPU index or UUID",
    fields: "ReportGpuUtilization samples[].gpu",
    max_bytes: 64,
};

/// Instance ids (EC2 `i-…`, GCE numeric ids, Azure vmIds) and names, and GPU ids.
pub const INSTANCE: Limit = Limit {
    what: "instance id or name",
    fields: "FleetService Keep/ListActions instance, `bursar fleet keep`",
    max_bytes: 256,
};
pub const KEEP_REASON: Limit = Limit {
    what: "keep reason or requester",
    fields: "FleetService Keep reason/requested_by, `bursar fleet keep --reason`",
    max_bytes: 500,
};

pub const LABELS: CountLimit = CountLimit {
    what: "labels",
    fields: "SelectProvider labels",
    max: 64,
};
pub const EMAILS: CountLimit = CountLimit {
    what: "email addresses",
    fields: "budget.emails",
    max: 50,
};
pub const WEBHOOKS: CountLimit = CountLimit {
    what: "Slack webhook URLs",
    fields: "budget.slack_webhooks",
    max: 20,
};
pub const LIST_ITEMS: CountLimit = CountLimit {
    what: "items of a repeated request field",
    fields: "SelectProvider accelerators, inputs, regions, jurisdictions",
    max: 100,
};
pub const GPU_SAMPLES: CountLimit = CountLimit {
    what: "GPU utilisation samples per call",
    fields: "ReportGpuUtilization samples",
    max: 10_000,
};

/// Every text limit, in README's order.
pub const ALL: &[Limit] = &[
    BUDGET_NAME,
    EMAIL,
    WEBHOOK_URL,
    SCOPE_VALUE,
    TIMEZONE,
    TAG_KEY,
    TAG_VALUE,
    REGION,
    MARK_REASON,
    MARK_ID,
    LABEL_KEY,
    LABEL_VALUE,
    FILTER,
    INSTANCE,
    KEEP_REASON,
    GPU_INSTANCE_ID,
    GPU_ID,
];

/// Every count limit, in README's order.
pub const COUNTS: &[CountLimit] = &[EMAILS, WEBHOOKS, LABELS, LIST_ITEMS, GPU_SAMPLES];

impl Limit {
    /// `Err` with a message that gives the value's length and the limit (never the value)
    /// when `value` is too long or holds a control character.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.len() > self.max_bytes {
            return Err(format!(
                "is {} bytes; the limit for {} is {} bytes",
                value.len(),
                self.what,
                self.max_bytes
            ));
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(format!(
                "control character {c:?} not allowed in {}",
                self.what
            ));
        }
        Ok(())
    }
}

impl CountLimit {
    pub fn check(&self, n: usize) -> Result<(), String> {
        if n > self.max {
            return Err(format!("{n} {} given: at most {}", self.what, self.max));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_refused_without_being_echoed() {
        let reason = "x".repeat(3 * 1024 * 1024);
        let e = MARK_REASON.check(&reason).unwrap_err();
        assert_eq!(
            e,
            "is 3145728 bytes; the limit for unavailability reason is 500 bytes"
        );
        assert!(MARK_REASON.check(&"x".repeat(500)).is_ok());
        assert!(MARK_REASON.check("zone down\nFAKE LOG LINE").is_err());
        assert!(LABELS.check(65).is_err() && LABELS.check(64).is_ok());
    }

    /// README's table lists every limit with its number.
    #[test]
    fn readme_lists_every_limit() {
        let readme = include_str!("../../README.md");
        for l in ALL {
            let row = format!("| {} | {} |", l.what, l.max_bytes);
            assert!(readme.contains(&row), "README lacks the row {row:?}");
        }
        for l in COUNTS {
            let row = format!("| {} | {} |", l.what, l.max);
            assert!(readme.contains(&row), "README lacks the row {row:?}");
        }
    }
}
