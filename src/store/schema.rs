//! The diesel schema shared by both backends. Only portable SQL types are used (`BigInt`,
//! `Integer`, `Text`, `Bool`, `Double`, `Date`, `Timestamp` in UTC), so one `table!` block
//! serves SQLite and PostgreSQL. It mirrors `migrations/postgres` and `migrations/sqlite`.

diesel::table! {
    providers (id) {
        id -> BigInt,
        name -> Text,
        base_url -> Text,
        api_key -> Text,
        api_key_env -> Nullable<Text>,
        models -> Text,
        weight -> Integer,
        priority -> Integer,
        timeout_ms -> BigInt,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        probe_model -> Nullable<Text>,
        http2 -> Bool,
        kind -> Text,
        endpoints -> Nullable<Text>,
        max_concurrency -> Nullable<Integer>,
        rpm -> Nullable<Integer>,
        tpm -> Nullable<BigInt>,
    }
}

diesel::table! {
    provider_validations (id) {
        id -> BigInt,
        provider_id -> BigInt,
        is_healthy -> Bool,
        error_count -> Integer,
        last_error -> Nullable<Text>,
        last_status_code -> Nullable<Integer>,
        last_validated_at -> Nullable<Timestamp>,
        last_success_at -> Nullable<Timestamp>,
        next_retry_at -> Nullable<Timestamp>,
        consecutive_successes -> Integer,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    provider_usage_stats (id) {
        id -> BigInt,
        provider_id -> BigInt,
        model -> Text,
        date -> Date,
        total_requests -> BigInt,
        success_requests -> BigInt,
        failed_requests -> BigInt,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        total_tokens -> BigInt,
        total_response_time_ms -> BigInt,
        avg_response_time_ms -> Double,
        last_used_at -> Timestamp,
    }
}

diesel::table! {
    health_check_configs (id) {
        id -> Integer,
        enabled -> Bool,
        interval_seconds -> BigInt,
        max_error_count -> Integer,
        retry_after_seconds -> BigInt,
        auto_recovery -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    config_version (id) {
        id -> Integer,
        version -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    provider_standing (provider_id) {
        provider_id -> BigInt,
        is_healthy -> Bool,
        next_retry_at -> Nullable<Timestamp>,
        generation -> BigInt,
        cause -> Text,
        changed_at -> Timestamp,
        changed_by -> Text,
    }
}

diesel::joinable!(provider_validations -> providers (provider_id));
diesel::joinable!(provider_standing -> providers (provider_id));
diesel::allow_tables_to_appear_in_same_query!(providers, provider_validations, provider_standing);
