//! The one table of what each RPC needs. Deny by default: a method not listed here is refused, and a test
//! checks that every method of every `points.v1` service is listed.

use crate::domain::Scope;

/// What a method needs from the calling key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A platform admin key.
    Admin,
    /// Any valid key (e.g. "who am I").
    AnyKey,
    /// The scope, and a merchant context (a merchant key, or an admin key with `x-merchant-id`).
    Merchant(Scope),
    /// The scope; an admin key without `x-merchant-id` acts on the platform level (platform keys, platform audit).
    MerchantOrPlatform(Scope),
}

use Requirement::{Admin, AnyKey, Merchant, MerchantOrPlatform};

/// Full gRPC method path → requirement.
pub const METHOD_ACCESS: &[(&str, Requirement)] = &[
    ("/points.v1.MerchantService/RegisterMerchant", Admin),
    ("/points.v1.MerchantService/GetMerchant", Admin),
    ("/points.v1.MerchantService/ListMerchants", Admin),
    ("/points.v1.MerchantService/UpdateMerchant", Admin),
    ("/points.v1.MerchantService/GetMe", AnyKey),
    (
        "/points.v1.ApiKeyService/CreateApiKey",
        MerchantOrPlatform(Scope::KeysManage),
    ),
    (
        "/points.v1.ApiKeyService/ListApiKeys",
        MerchantOrPlatform(Scope::KeysManage),
    ),
    (
        "/points.v1.ApiKeyService/RotateApiKey",
        MerchantOrPlatform(Scope::KeysManage),
    ),
    (
        "/points.v1.ApiKeyService/RevokeApiKey",
        MerchantOrPlatform(Scope::KeysManage),
    ),
    (
        "/points.v1.PointsService/Earn",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/Spend",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/Adjust",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/Reverse",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/Batch",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/GetEntry",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.PointsService/GetAccount",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.PointsService/ListEntries",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.PointsService/Calculate",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.PointsService/CreateHold",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/CaptureHold",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/VoidHold",
        Merchant(Scope::PointsWrite),
    ),
    (
        "/points.v1.PointsService/GetHold",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.PointsService/ListHolds",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.RuleService/ListRules",
        Merchant(Scope::RulesRead),
    ),
    ("/points.v1.RuleService/GetRule", Merchant(Scope::RulesRead)),
    (
        "/points.v1.RuleService/ListRuleVersions",
        Merchant(Scope::RulesRead),
    ),
    (
        "/points.v1.RuleService/PutRule",
        Merchant(Scope::RulesWrite),
    ),
    (
        "/points.v1.RuleService/SyncRules",
        Merchant(Scope::RulesWrite),
    ),
    (
        "/points.v1.PointsService/ListAccounts",
        Merchant(Scope::PointsRead),
    ),
    (
        "/points.v1.ReportService/GetLiabilityReport",
        MerchantOrPlatform(Scope::PointsRead),
    ),
    (
        "/points.v1.AuditService/ListAuditLogs",
        MerchantOrPlatform(Scope::AuditRead),
    ),
    (
        "/points.v1.AuditService/GetAuditLog",
        MerchantOrPlatform(Scope::AuditRead),
    ),
    (
        "/points.v1.AuditService/VerifyAuditLog",
        MerchantOrPlatform(Scope::AuditRead),
    ),
];

/// The requirement of a method, or None when it declares none (and is therefore refused).
pub fn requirement(method: &str) -> Option<Requirement> {
    METHOD_ACCESS
        .iter()
        .find(|(path, _)| *path == method)
        .map(|(_, requirement)| *requirement)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_points_v1_method_declares_its_access() {
        let descriptor_set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods = Vec::new();
        for file in descriptor_set
            .file
            .iter()
            .filter(|file| file.package() == "points.v1")
        {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!("/points.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        assert!(methods.len() >= 26, "found only {methods:?}");
        let undeclared: Vec<_> = methods
            .iter()
            .filter(|method| requirement(method).is_none())
            .collect();
        assert!(
            undeclared.is_empty(),
            "methods without a declared scope: {undeclared:?}"
        );
        let unknown: Vec<_> = METHOD_ACCESS
            .iter()
            .filter(|(path, _)| !methods.iter().any(|m| m == path))
            .map(|(p, _)| p)
            .collect();
        assert!(
            unknown.is_empty(),
            "table entries for methods that do not exist: {unknown:?}"
        );
    }
}
