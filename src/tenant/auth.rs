//! Tokens from Microsoft Entra ID (OAuth 2.0 client credentials): a client secret, a JWT client
//! assertion signed with the app's certificate, or a federated token file; cached until shortly
//! before they expire. (Stub: to be implemented.)
