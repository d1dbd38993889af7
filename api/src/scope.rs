//! Key scopes (SPEC §4), named once.

/// What a key may do. `Admin` is the platform scope and implies every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "openapi",
    derive(serde::Deserialize, serde::Serialize, utoipa::ToSchema)
)]
pub enum Scope {
    /// Platform administration (platform keys only).
    #[cfg_attr(feature = "openapi", serde(rename = "admin"))]
    Admin,
    /// Read balances and entries, calculate.
    #[cfg_attr(feature = "openapi", serde(rename = "points:read"))]
    PointsRead,
    /// Earn, spend, adjust, reverse, batch.
    #[cfg_attr(feature = "openapi", serde(rename = "points:write"))]
    PointsWrite,
    /// Read rules.
    #[cfg_attr(feature = "openapi", serde(rename = "rules:read"))]
    RulesRead,
    /// Change rules.
    #[cfg_attr(feature = "openapi", serde(rename = "rules:write"))]
    RulesWrite,
    /// Read and verify the audit log.
    #[cfg_attr(feature = "openapi", serde(rename = "audit:read"))]
    AuditRead,
    /// Manage the merchant's keys.
    #[cfg_attr(feature = "openapi", serde(rename = "keys:manage"))]
    KeysManage,
}

impl Scope {
    /// Every scope a merchant key can hold; a new merchant's first key gets all of them.
    pub const MERCHANT: [Scope; 6] = [
        Scope::PointsRead,
        Scope::PointsWrite,
        Scope::RulesRead,
        Scope::RulesWrite,
        Scope::AuditRead,
        Scope::KeysManage,
    ];

    /// Every scope.
    pub const ALL: [Scope; 7] = [
        Scope::Admin,
        Scope::PointsRead,
        Scope::PointsWrite,
        Scope::RulesRead,
        Scope::RulesWrite,
        Scope::AuditRead,
        Scope::KeysManage,
    ];

    /// The scope's name, as keys, protos and JSON spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::PointsRead => "points:read",
            Scope::PointsWrite => "points:write",
            Scope::RulesRead => "rules:read",
            Scope::RulesWrite => "rules:write",
            Scope::AuditRead => "audit:read",
            Scope::KeysManage => "keys:manage",
        }
    }

    /// The scope named `name`, if any.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name() {
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::from_name("points:admin"), None);
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn json_names_are_the_scope_names() {
        for scope in Scope::ALL {
            let json = serde_json::to_value(scope).expect("serialize");
            assert_eq!(json, serde_json::Value::from(scope.as_str()));
            assert_eq!(
                serde_json::from_value::<Scope>(json).expect("deserialize"),
                scope
            );
        }
    }
}
