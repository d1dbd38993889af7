-- Conversion rules: let a version's validity be empty (effective_to = effective_from).
--
-- A `replace` sync ends every code absent from its list. A version scheduled to start later cannot be ended "now"
-- without ending before it starts, which V1's `effective_to > effective_from` forbids; an empty interval records
-- that it was withdrawn before it ever applied, while the row itself stays (versions are never deleted). Clients
-- still cannot create an empty version: the service requires effective_to > effective_from on input.
-- The new constraint is added before the old one is dropped, so re-running this file fails on "already exists".
ALTER TABLE rule_versions
    ADD CONSTRAINT rule_versions_effective_range CHECK (effective_to IS NULL OR effective_to >= effective_from);
ALTER TABLE rule_versions DROP CONSTRAINT rule_versions_check;
