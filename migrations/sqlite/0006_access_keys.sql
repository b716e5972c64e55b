-- Access keys (AK/SK) for requests signed the way Huawei's SDKs sign them
-- (SDK-HMAC-SHA256). A key belongs to a user; `id` is the AK. Verifying a
-- signature needs the secret key itself, so it cannot be hashed: it is kept
-- sealed (XChaCha20-Poly1305 under a master key that is not in the
-- database; nonce followed by ciphertext and tag, the AK as associated
-- data). `sealed_with` names that master key (a digest of it, not the key)
-- so a process holding another key can say so. Revoking a key sets
-- `revoked_at`; the row stays for the operator's list.
create table access_keys (
    pk integer primary key,
    id text not null unique,
    user_pk integer not null references users(pk) on delete cascade,
    secret_sealed blob not null,
    sealed_with text not null,
    created_at integer not null,
    last_used_at integer,
    revoked_at integer
);
create index access_keys_user on access_keys (user_pk);
